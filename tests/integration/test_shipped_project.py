"""The project as shipped: its runbooks, playbooks and example inventory, run as the README says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from maintainer.actions.template import TemplateAction, TemplateArgs
from maintainer.errors import StepFailed
from maintainer.testing import action_context
from tests.helpers import REPO, cli, read_log

SHIPPED = ["runbooks", "inventories", "playbooks", "templates", "examples", "maintainer.toml"]


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """A copy of the repository's project files, so runs do not touch the checkout."""
    project = tmp_path / "project"
    project.mkdir()
    for name in SHIPPED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, project / name)
        else:
            shutil.copy2(source, project / name)
    return project


def test_every_shipped_runbook_is_valid() -> None:
    result = cli(REPO, "runbooks", "validate", "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["problems"] == []


def test_the_readme_first_command_backs_up_the_example_site_and_restores_it(shipped: Path, tmp_path: Path) -> None:
    first = cli(shipped, "run", "backup", "--output", "json")  # maintainer.toml names inventories/example.yml
    assert first.returncode == 0, first.stderr
    change = json.loads(first.stdout)["sites"]["example-site"]["changes"][0]
    store = shipped / ".maintainer" / "backups" / "example-site"
    assert change["what"] == "backup" and change["location"] == f"file://{store}"
    assert change["files"] >= 1 and change["new_files"] == change["files"]
    again = json.loads(cli(shipped, "run", "backup", "--output", "json").stdout)
    assert again["sites"]["example-site"]["changes"][0]["new_files"] == 0
    listed = json.loads(cli(shipped, "backups", "list", "example-site", "-o", "json").stdout)
    assert [b["status"] for b in listed["backups"]] == ["complete", "complete"]
    out = tmp_path / "restored"
    restored = cli(shipped, "restore", "example-site", "--to", str(out))
    assert restored.returncode == 0, restored.stderr
    source = shipped / "examples" / "site" / "public"
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    expected = {path: data for path, data in files(source).items() if not path.startswith("cache/")}
    assert files(out) == expected and "index.html" in expected  # cache/ is excluded in the inventory
    assert [e["runbook"]["name"] for e in read_log(shipped)] == ["backup", "backup", "restore"]


def test_site_health_checks_the_example_site_and_changes_nothing(shipped: Path) -> None:
    result = cli(shipped, "run", "site-health", "--output", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    site = document["sites"]["example-site"]
    assert site["status"] == "ok"
    entry = read_log(shipped)[-1]
    steps = entry["sites"]["example-site"]["steps"]
    assert [s["id"] for s in steps if s["status"] == "ok"] == ["http", "docroot", "disk", "facts"]
    assert not any(s.get("changed") for s in steps), "a read-only health check recorded changes"


def test_os_checks_run_the_shipped_playbook_and_fail_loudly(shipped: Path) -> None:
    ok = cli(shipped, "run", "site-health", "-p", "os_checks=true", "--output", "json", timeout=300)
    assert ok.returncode == 0, ok.stderr
    steps = json.loads(ok.stdout)["sites"]["example-site"]["steps"]
    os_step = next(s for s in steps if s["id"] == "os")
    assert os_step["status"] == "ok", os_step

    # a host that cannot meet the memory floor fails the step with the playbook's own message
    inventory = shipped / "inventories" / "example.yml"
    data = yaml.safe_load(inventory.read_text())
    data["all"]["children"]["examples"]["hosts"]["example-site"]["maintainer_min_free_memory_mb"] = 10**9
    inventory.write_text(yaml.safe_dump(data))
    bad = cli(shipped, "run", "site-health", "-p", "os_checks=true", "--output", "json", timeout=300)
    assert bad.returncode == 1, bad.stderr
    site = json.loads(bad.stdout)["sites"]["example-site"]
    assert site["status"] == "failed"
    assert "of memory free" in json.dumps(site)


@pytest.mark.skipif(not Path("/usr/sbin/nginx").exists(), reason="nginx is installed by .ci/run")
def test_the_shipped_nginx_template_renders_a_config_nginx_accepts(tmp_path: Path) -> None:
    dest = tmp_path / "nginx.conf"
    ctx = action_context(REPO, site_vars={"nginx_worker_connections": 2048}, params={"keepalive": 30})
    args = TemplateArgs(src="nginx/nginx.conf.j2", dest=str(dest), validate="nginx -t -q -c %s")
    result = TemplateAction().run(ctx, args)
    assert result.changed
    text = dest.read_text()
    assert "keepalive_timeout 30;" in text and "worker_connections 2048;" in text

    # the same validation refuses a broken value, and the installed file stays as it was
    bad = action_context(REPO, site_vars={"nginx_worker_connections": "lots"}, params={"keepalive": 30})
    with pytest.raises(StepFailed, match=r"invalid number \"lots\""):
        TemplateAction().run(bad, args)
    assert dest.read_text() == text
