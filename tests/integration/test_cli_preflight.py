"""The real CLI on what must be caught before (or instead of) a run that looks healthy.

Failed finally steps, names Jinja cannot reach, missing playbooks, dry runs that could not reach a
site, list params, runs refused by locks, and the messages that say where to look.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible.constants import DEFAULT_VAULT_ID_MATCH
from ansible.parsing.vault import VaultLib, VaultSecret

from tests.helpers import cli, local_site, make_project, read_log
from tests.servers.sshd import SSHServer, free_port


def _project(tmp_path: Path, runbook: str, sites: dict[str, dict[str, Any]] | None = None) -> Path:
    return make_project(tmp_path, {"rb@1.0.0": runbook}, sites or {"web1": local_site(tmp_path)})


def _down_site(port: int) -> dict[str, Any]:
    """An SSH site where nothing listens: unreachable at once."""
    return {
        "ansible_host": "127.0.0.1",
        "ansible_port": port,
        "ansible_user": "deploy",
        "maintainer_connect_timeout": 3,
    }


def test_a_failed_finally_step_exits_1_naming_the_step(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        f"""
        name: rb
        version: 1.0.0
        steps:
          - {{id: work, uses: shell, with: {{command: "true"}}}}
        finally:
          - {{id: maint_off, uses: shell, with: {{command: "exit 1"}}}}
          - {{id: last, uses: shell, with: {{command: "touch {tmp_path}/last-ran"}}}}
        """,
    )
    result = cli(project, "run", "rb", "-o", "json")
    assert result.returncode == 1, result.stderr
    site = json.loads(result.stdout)["sites"]["web1"]
    assert site["status"] == "failed"
    assert site["error"].startswith("finally step 'maint_off' failed: exited with 1")
    assert (tmp_path / "last-ran").exists()


@pytest.mark.parametrize(
    ("runbook", "needle", "fix"),
    [
        (
            """
            name: rb
            version: 1.0.0
            steps:
              - {id: clear, uses: shell, with: {command: "true"}}
              - {id: show, uses: debug, with: {msg: "{{ steps.clear.outputs }}"}}
            """,
            "step id 'clear' is the name of a dict method",
            "rename the step, e.g. 'clear_cache'",
        ),
        (
            """
            name: rb
            version: 1.0.0
            params:
              items: {type: list, default: [a]}
            steps:
              - {id: show, uses: debug, with: {msg: "{{ params.items }}"}}
            """,
            "param name 'items' is the name of a dict method",
            "rename the param",
        ),
    ],
)
def test_names_of_dict_methods_are_refused_before_anything_runs(
    tmp_path: Path, runbook: str, needle: str, fix: str
) -> None:
    project = _project(tmp_path, runbook)
    validate = cli(project, "runbooks", "validate")
    assert validate.returncode == 2 and needle in validate.stderr and fix in validate.stderr
    assert "runbooks/rb/1.0.0.yml:" in validate.stderr
    run = cli(project, "run", "rb")
    assert run.returncode == 2 and needle in run.stderr
    assert read_log(project) == []


def test_every_non_dunder_dict_attribute_is_reserved(tmp_path: Path) -> None:
    names = sorted(n for n in dir(dict) if not n.startswith("__"))
    steps = "".join(f"  - {{id: {n}, uses: debug, with: {{msg: x}}}}\n" for n in names)
    project = _project(tmp_path, f"name: rb\nversion: 1.0.0\nsteps:\n{steps}")
    validate = cli(project, "runbooks", "validate")
    assert validate.returncode == 2
    assert all(f"step id '{n}' is the name of a dict method" in validate.stderr for n in names)


PLAYBOOK_RUNBOOK = """
name: rb
version: 1.0.0
steps:
  - id: change
    uses: shell
    with: {command: "touch {marker}"}
  - id: play
    uses: playbook
    with: {playbook: PLAYBOOK}
"""


def test_a_missing_playbook_is_bad_input_before_any_site_changes(tmp_path: Path) -> None:
    marker = tmp_path / "changed"
    project = _project(
        tmp_path, PLAYBOOK_RUNBOOK.replace("{marker}", str(marker)).replace("PLAYBOOK", "nope.yml")
    )
    (project / "playbooks" / "ops.yml").write_text("- hosts: all\n  tasks: []\n")
    validate = cli(project, "runbooks", "validate")
    assert validate.returncode == 2
    assert "runbooks/rb/1.0.0.yml:10" in validate.stderr
    assert f"playbook 'nope.yml' not found under {project / 'playbooks'}" in validate.stderr
    run = cli(project, "run", "rb")
    assert run.returncode == 2 and "playbook 'nope.yml' not found" in run.stderr
    assert not marker.exists(), "the earlier step must not have run"
    assert read_log(project) == []


def test_a_playbook_that_is_not_yaml_is_reported_at_its_line(tmp_path: Path) -> None:
    marker = tmp_path / "changed"
    project = _project(
        tmp_path, PLAYBOOK_RUNBOOK.replace("{marker}", str(marker)).replace("PLAYBOOK", "ops.yml")
    )
    (project / "playbooks" / "ops.yml").write_text("- hosts: all\n  tasks:\n    - debug: {msg: [unclosed}\n")
    validate = cli(project, "runbooks", "validate")
    assert validate.returncode == 2
    assert (
        f"{project / 'playbooks' / 'ops.yml'}:3" in validate.stderr and "is not valid YAML" in validate.stderr
    )
    assert cli(project, "run", "rb").returncode == 2 and not marker.exists()
    # Ansible's own tags are YAML too: a vaulted value does not make the file invalid
    (project / "playbooks" / "ops.yml").write_text(
        "- hosts: all\n  vars:\n    pw: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      6162\n  tasks: []\n"
    )
    assert cli(project, "runbooks", "validate").returncode == 0


def test_dry_run_exits_1_when_a_site_is_unreachable_and_still_prints_the_whole_plan(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        'name: rb\nversion: 1.0.0\nsteps:\n  - {id: a, uses: shell, with: {command: "true"}}\n',
        {"web1": local_site(tmp_path), "down": _down_site(free_port())},
    )
    text = cli(project, "run", "rb", "--dry-run")
    assert text.returncode == 1, text.stderr
    assert "web1" in text.stdout and "down" in text.stdout and "- a (shell)" in text.stdout
    assert "1 site(s) could not be previewed: down:" in text.stderr and "refused" in text.stderr
    as_json = cli(project, "run", "rb", "--dry-run", "-o", "json")
    assert as_json.returncode == 1
    plan = json.loads(as_json.stdout)
    assert plan["exit_code"] == 1
    assert plan["sites"]["down"]["previewed"] is False and "refused" in plan["sites"]["down"]["error"]
    assert "previewed" not in plan["sites"]["web1"] and plan["sites"]["web1"]["steps"]
    assert read_log(project) == []


def test_dry_run_exits_1_when_a_site_cannot_be_previewed(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    project = _project(
        tmp_path,
        f"""
        name: rb
        version: 1.0.0
        steps:
          - {{id: conf, uses: template, with: {{src: app.conf.j2, dest: "{tmp_path}/a-directory"}}}}
        """,
    )
    (project / "templates" / "app.conf.j2").write_text("x\n")
    result = cli(project, "run", "rb", "--dry-run", "-o", "json")
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["sites"]["web1"]["previewed"] is False


def test_dry_run_exits_1_on_a_wrong_host_key(sshd_server: SSHServer, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, key = other.with_suffix(".pub").read_text().split()[:2]
    bad_known_hosts = tmp_path / "bad_known_hosts"
    bad_known_hosts.write_text(f"[127.0.0.1]:{sshd_server.port} {key_type} {key}\n")
    project = _project(
        tmp_path,
        'name: rb\nversion: 1.0.0\nsteps:\n  - {id: a, uses: shell, with: {command: "true"}}\n',
        {
            "good": sshd_server.site_vars(),
            "spoofed": sshd_server.site_vars(maintainer_known_hosts=str(bad_known_hosts)),
        },
    )
    result = cli(project, "run", "rb", "--dry-run", "-o", "json")
    assert result.returncode == 1, result.stderr
    sites = json.loads(result.stdout)["sites"]
    assert "previewed" not in sites["good"]
    assert sites["spoofed"]["previewed"] is False and "mismatch" in sites["spoofed"]["error"].lower()


def test_a_list_param_given_as_a_json_list(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        """
        name: rb
        version: 1.0.0
        params:
          fail_sites: {type: list}
        steps:
          - {id: show, uses: debug, with: {msg: "{{ params.fail_sites | length }}:{{ params.fail_sites | join('|') }}"}}
        """,
    )
    result = cli(project, "run", "rb", "-p", 'fail_sites=["s1","s2"]', "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["params"] == {"fail_sites": ["s1", "s2"]}
    bad = cli(project, "run", "rb", "-p", 'fail_sites=["s1","s2"')
    assert bad.returncode == 2 and "starts with '[' but is not a flow list" in bad.stderr
    assert """-p 'fail_sites=["a", "b"]'""" in bad.stderr
    assert len(read_log(project)) == 1


def test_a_run_refused_by_locks_is_not_recorded(tmp_path: Path) -> None:
    project = _project(
        tmp_path, 'name: rb\nversion: 1.0.0\nsteps:\n  - {id: a, uses: shell, with: {command: "true"}}\n'
    )
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "web1.lock").write_text(json.dumps({"holder": "carol@ci", "run_id": "x"}))
    text = cli(project, "run", "rb")
    assert text.returncode == 3
    assert "carol@ci" in text.stderr and "nothing was run or recorded" in text.stderr
    as_json = cli(project, "run", "rb", "-o", "json")
    assert as_json.returncode == 3
    document = json.loads(as_json.stdout)
    assert document["recorded"] is False and document["status"] == "refused" and "seq" not in document
    assert "carol@ci" in document["sites"]["web1"]["error"] and document["sites"]["web1"]["host"] == "local"
    assert read_log(project) == []


@pytest.mark.parametrize(
    "args", [("runbooks", "list"), ("runbooks", "show", "rb"), ("runbooks", "validate"), ("log", "show")]
)
def test_an_unknown_setting_is_exit_2_for_every_command(tmp_path: Path, args: tuple[str, ...]) -> None:
    project = _project(
        tmp_path, "name: rb\nversion: 1.0.0\nsteps:\n  - {id: a, uses: debug, with: {msg: x}}\n"
    )
    with (project / "maintainer.toml").open("a") as fh:
        fh.write('chnagelog = "x.jsonl"\n')
    result = cli(project, *args)
    assert result.returncode == 2, (args, result.stderr)
    assert "unknown setting 'chnagelog'" in result.stderr and "did you mean 'changelog'" in result.stderr


def test_log_verify_on_a_cut_log_says_where_it_ends(tmp_path: Path) -> None:
    project = _project(
        tmp_path, "name: rb\nversion: 1.0.0\nsteps:\n  - {id: a, uses: debug, with: {msg: x}}\n"
    )
    for _ in range(3):
        assert cli(project, "run", "rb").returncode == 0
    head = json.loads(cli(project, "log", "verify", "-o", "json").stdout)["head_hash"]
    log = project / "changelog.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    second = json.loads(lines[1])["hash"]
    log.write_text("".join(lines[:2]))
    result = cli(project, "log", "verify", "--expect-head", head)
    assert result.returncode == 1
    assert f"the log ends at entry 2 (hash {second})" in result.stderr
    assert "entries were removed from the end" in result.stderr and "another log" in result.stderr
    assert "first bad entry" not in result.stderr, "entry 2 is intact: it must not be called bad"
    report = json.loads(cli(project, "log", "verify", "--expect-head", head, "-o", "json").stdout)
    assert (report["ok"], report["entries"], report["first_bad_seq"]) == (False, 2, None)


def test_a_message_and_its_fix_are_separate_sentences(tmp_path: Path) -> None:
    project = _project(
        tmp_path, "name: rb\nversion: 1.0.0\nsteps:\n  - {id: a, uses: debug, with: {msg: x}}\n"
    )
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(b"pw"))])
    ciphertext = vault.encrypt("secret").decode()
    host_vars = project / "inventories" / "host_vars"
    host_vars.mkdir()
    (host_vars / "web1.yml").write_text(
        "db_password: !vault |\n" + "".join(f"  {line}\n" for line in ciphertext.splitlines())
    )
    env = {"MAINTAINER_VAULT_PASSWORD": "", "MAINTAINER_VAULT_PASSWORD_FILE": ""}
    result = cli(project, "run", "rb", env=env)
    assert result.returncode == 2
    assert "no vault password was given. Fix: " in result.stderr


def test_a_wrong_inventory_path_names_both_places_tried(tmp_path: Path) -> None:
    project = _project(
        tmp_path, "name: rb\nversion: 1.0.0\nsteps:\n  - {id: a, uses: debug, with: {msg: x}}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [*cli_argv(project), "run", "rb", "-i", "inventories/tset.yml"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert str(elsewhere / "inventories" / "tset.yml") in result.stderr
    assert str(project / "inventories" / "tset.yml") in result.stderr


def cli_argv(project: Path) -> list[str]:
    from tests.helpers import MAINTAINER

    return [MAINTAINER, "--project", str(project)]
