"""The custom adapter for real: a hand-made "site" whose inventory commands are small shell scripts in
a temp dir (versions in files, a flag file for maintenance), run through the local transport and
through SSH to the throwaway sshd (tests/servers/sshd.py). No mocks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from maintainer.cms.base import CmsError, PlannedUpdate, adapter_for
from maintainer.cms.custom import CustomAdapter
from maintainer.errors import BadInput
from maintainer.inventory import Site
from maintainer.ssh import SSHTransport
from maintainer.transport import LocalTransport
from tests.servers.sshd import TEST_USER, SSHServer

#: prints a warning, then the available updates from the site's version files
UPDATES = r"""#!/bin/bash
echo "Warning: update server slow" >&2
echo "Deprecated: something noisy"
python3 - <<'EOF'
import json, pathlib
core = pathlib.Path("version.txt").read_text().strip()
foo = pathlib.Path("plugins/foo/VERSION").read_text().strip()
out = []
if core != "1.1.0":
    out.append({"type": "core", "slug": "app", "name": "App", "from": core, "to": "1.1.0"})
if foo != "2.0.1":
    out.append({"type": "plugin", "slug": "foo", "name": "Foo's \"best\" plugin", "from": foo,
                "to": "2.0.1", "security": True, "requires_php": "8.1"})
print(json.dumps(out))
EOF
"""
#: applies the plan it reads on stdin by writing the version files; prints per-item results
UPDATE_JSON = r"""#!/bin/bash
python3 -c '
import json, os, pathlib, sys
plan = json.load(sys.stdin)
assert plan == json.loads(os.environ["MAINTAINER_UPDATE_PLAN"])
results = []
for item in plan:
    target = pathlib.Path("version.txt") if item["type"] == "core" else pathlib.Path("plugins", item["slug"], "VERSION")
    target.write_text(item["to"] + "\n")
    pathlib.Path("names.log").open("a").write(item["name"] + "\n")
    results.append({"type": item["type"], "slug": item["slug"], "ok": True, "version": target.read_text().strip()})
print(json.dumps(results))
'
"""
#: the shell-only way: MAINTAINER_UPDATE_ITEMS lines, no JSON printed
UPDATE_LINES = r"""#!/bin/bash
while read -r type slug to; do
  if [ "$type" = core ]; then echo "$to" > version.txt; else echo "$to" > "plugins/$slug/VERSION"; fi
done <<< "$MAINTAINER_UPDATE_ITEMS"
"""


def make_site(root: Path) -> Path:
    (root / "plugins" / "foo").mkdir(parents=True)
    (root / "cache").mkdir()
    (root / "cache" / "page.html").write_text("cached")
    (root / "version.txt").write_text("1.0.0\n")
    (root / "plugins" / "foo" / "VERSION").write_text("2.0.0\n")
    for name, text in {
        "updates.sh": UPDATES,
        "update.sh": UPDATE_JSON,
        "update-lines.sh": UPDATE_LINES,
    }.items():
        (root / name).write_text(text)
        (root / name).chmod(0o755)
    return root


def site_vars(root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "cms": "custom",
        "docroot": str(root),
        "cms_version_command": "cat version.txt",  # relative: the commands run in the docroot
        "cms_updates_command": "./updates.sh",
        "cms_update_command": "./update.sh",
        "cms_maintenance_on_command": "touch .maintenance",
        "cms_maintenance_off_command": "rm -f .maintenance",
        "cms_maintenance_status_command": "if [ -e .maintenance ]; then echo on; else echo off; fi",
        "cms_db_update_command": "echo migrated >> migrations.log && echo 'Migrated: 2024_01_01_create_x'",
        "cms_cache_flush_command": "rm -rf cache/*",
        "cms_health_command": "test -s version.txt && echo healthy",
        **extra,
    }


def local_adapter(root: Path, **extra: Any) -> CustomAdapter:
    transport = LocalTransport()
    adapter = adapter_for(Site("app", site_vars(root, **extra), []), lambda argv: transport.run(list(argv)))
    assert isinstance(adapter, CustomAdapter)
    return adapter


def plan_of(adapter: CustomAdapter) -> list[PlannedUpdate]:
    return [PlannedUpdate(u.type, u.slug, u.name, u.current, u.available) for u in adapter.updates()]


def test_the_whole_update_flow_through_the_sites_own_commands(tmp_path: Path) -> None:
    root = make_site(tmp_path / "site")
    app = local_adapter(root)
    found = [(u.key, u.current, u.available, u.kind, u.security, u.requires_php) for u in app.updates()]
    assert found == [
        ("core", "1.0.0", "1.1.0", "minor", None, None),
        ("plugin:foo", "2.0.0", "2.0.1", "patch", True, "8.1"),
    ]  # the warning on stderr and the noise before the JSON are skipped

    assert app.maintenance_state() is False
    app.maintenance(True)
    assert (root / ".maintenance").exists() and app.maintenance_state() is True
    applied = app.apply(plan_of(app))
    assert [(a.item.key, a.ok, a.version) for a in applied] == [
        ("core", True, "1.1.0"),
        ("plugin:foo", True, "2.0.1"),
    ]
    assert (root / "plugins/foo/VERSION").read_text() == "2.0.1\n"
    assert (root / "names.log").read_text().splitlines()[1] == 'Foo\'s "best" plugin'  # quoting survives
    assert applied[0].command == ["bash", "-c", f"cd -- {root} || exit 1\n./update.sh"]
    assert app.updates() == [] and app.version() == "1.1.0"

    db = app.db_update()
    assert db.supported and db.ran[0]["message"] == "Migrated: 2024_01_01_create_x"
    assert app.cache_flush() is True and not list((root / "cache").iterdir())
    app.maintenance(False)
    assert not (root / ".maintenance").exists() and app.maintenance_state() is False
    assert app.health() == (True, "healthy")


def test_a_shell_only_update_command_gets_one_line_per_item(tmp_path: Path) -> None:
    root = make_site(tmp_path / "site")
    app = local_adapter(root, cms_update_command="./update-lines.sh")
    applied = app.apply(plan_of(app))
    # no per-item JSON: exit 0 is the answer, core's version is read back, the plugin's stays unknown
    assert [(a.ok, a.version) for a in applied] == [(True, "1.1.0"), (True, None)]
    assert "no per-item result printed" in applied[1].message
    assert (root / "plugins/foo/VERSION").read_text() == "2.0.1\n"


def test_a_failing_or_partial_update_is_not_success(tmp_path: Path) -> None:
    root = make_site(tmp_path / "site")
    app = local_adapter(root, cms_update_command="echo 'composer: conflict on foo' >&2; exit 3")
    applied = app.apply(plan_of(app))
    assert [a.ok for a in applied] == [False, False]
    assert applied[0].message == "cms_update_command failed (exit 3): composer: conflict on foo"

    partial = """echo '[{"type": "core", "slug": "app", "ok": true, "version": "1.1.0"},
                       {"type": "plugin", "slug": "foo", "ok": false, "message": "download failed"}]'"""
    app = local_adapter(root, cms_update_command=partial)
    applied = app.apply(plan_of(app))
    assert [(a.ok, a.message) for a in applied][1] == (False, "download failed")
    # the command says 1.1.0 while the version command still reads 1.0.0: the command's word counts
    assert applied[0].ok and applied[0].version == "1.1.0"

    lying = """echo '[{"type": "core", "slug": "app", "ok": true, "version": "1.0.9"}]'"""
    app = local_adapter(root, cms_update_command=lying)
    (core, _) = app.apply(plan_of(app))
    assert not core.ok and core.version == "1.0.9"  # not the planned version


def test_maintenance_that_does_not_take_is_an_error(tmp_path: Path) -> None:
    root = make_site(tmp_path / "site")
    app = local_adapter(root, cms_maintenance_on_command="true")
    with pytest.raises(CmsError, match="cms_maintenance_on_command exited 0 but cms_maintenance_status_command "
                                       "still says off"):  # fmt: skip
        app.maintenance(True)
    app = local_adapter(root, cms_maintenance_status_command="echo maybe")
    with pytest.raises(CmsError, match="printed neither on nor off"):
        app.maintenance_state()
    app = local_adapter(root, cms_maintenance_on_command="exit 5")
    with pytest.raises(CmsError, match=r"cms_maintenance_on_command failed \(exit 5\)"):
        app.maintenance(True)


def test_missing_commands_mean_not_supported(tmp_path: Path) -> None:
    transport = LocalTransport()
    app = adapter_for(Site("app", {"cms": "custom", "docroot": str(tmp_path)}, []),
                      lambda argv: transport.run(list(argv)))  # fmt: skip
    with pytest.raises(
        CmsError, match="this custom site has no cms_updates_command: set it in the inventory"
    ):
        app.updates()
    with pytest.raises(CmsError, match="no cms_maintenance_on_command"):
        app.maintenance(True)
    assert app.maintenance_state() is None and app.version() is None
    assert app.db_update().supported is False and app.cache_flush() is False
    assert app.apply([]) == []


def test_bad_update_lists_name_the_entry(tmp_path: Path) -> None:
    root = make_site(tmp_path / "site")
    app = local_adapter(root, cms_updates_command="""echo '[{"type": "core", "slug": "app"}]'""")
    with pytest.raises(CmsError, match="no usable update list: entry 0 has no to"):
        app.updates()
    app = local_adapter(root, cms_updates_command="""echo '[{"type": "gadget", "slug": "x", "to": "1"}]'""")
    with pytest.raises(CmsError, match="entry 0 has type 'gadget'"):
        app.updates()
    app = local_adapter(root, cms_updates_command="echo '[]'")
    assert app.updates() == []


def test_inconsistent_vars_are_bad_input_at_plan_time(tmp_path: Path) -> None:
    def check(**vars_: Any) -> BadInput:
        with pytest.raises(BadInput) as error:
            CustomAdapter.check_site(Site("app", {"cms": "custom", **vars_}, []))
        return error.value

    error = check(cms_maintenance_on_command="php artisan down")
    assert error.key == "cms_maintenance_off_command"
    assert "sets cms_maintenance_on_command but not cms_maintenance_off_command" in str(error)
    assert check(cms_update_command="./update.sh").key == "cms_updates_command"
    assert "not a command" in str(check(cms_db_update_command=["php", "artisan", "migrate"]))
    CustomAdapter.check_site(Site("app", site_vars(tmp_path), []))  # a consistent site passes


def test_over_ssh_the_plan_and_the_flag_file_cross_intact(sshd_server: SSHServer) -> None:
    root = make_site(sshd_server.workspace(f"custom-{id(sshd_server)}"))
    for path in [root, *root.rglob("*")]:
        shutil.chown(path, TEST_USER, TEST_USER)
    vars_ = sshd_server.site_vars(**site_vars(root))
    transport = SSHTransport.from_vars(sshd_server.host, sshd_server.port, sshd_server.user, vars_)
    try:
        app = adapter_for(Site("app", vars_, []), lambda argv: transport.run(list(argv)))
        assert isinstance(app, CustomAdapter)
        app.maintenance(True)
        assert (root / ".maintenance").stat().st_uid != 0  # made by the SSH user
        applied = app.apply(plan_of(app))
        assert [(a.ok, a.version) for a in applied] == [(True, "1.1.0"), (True, "2.0.1")]
        assert 'Foo\'s "best" plugin' in (root / "names.log").read_text()
        app.maintenance(False)
        assert app.maintenance_state() is False
        assert json.loads(json.dumps([a.record() for a in applied]))[1]["installed"] == "2.0.1"
    finally:
        transport.close()
        shutil.rmtree(root, ignore_errors=True)
