"""The shipped cms-update runbook against a real WordPress with updates waiting (issue 5).

Each site is ``tests/servers/wp_updates.py``'s: a private copy of Debian's WordPress with test
plugins and a theme installed, its own database on the throwaway MariaDB, served by PHP's built-in
server, reached through the WP-CLI stand-in, with a local update source offering newer releases
(``broken-plugin`` 1.1 is a white screen: a fatal error on every page). Runs go through the real
CLI (``maintainer run cms-update``), backups into a local ``file://`` store, and the assertions read
the site itself (versions through the stand-in, pages over HTTP, rows in its database) and the
change log.

One thing is simulated, and says so: ``test_a_plugin_update_that_breaks_the_site_...`` changes two
rows in the site's database while the update runs (as a plugin's migration would), to prove the
rollback restores the database too; the test plugins have no migrations of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from maintainer import locks
from maintainer.transport import LocalTransport
from tests.helpers import MAINTAINER, REPO, cli, local_site, make_project, read_log
from tests.servers.mariadb import MariaDBServer
from tests.servers.wp_updates import UpdateBase, UpdatePackages, WpUpdateSite, update_site

RUNBOOK = (REPO / "runbooks" / "cms-update" / "1.0.0.yml").read_text()
TIMEOUT = 600


def project_for(tmp_path: Path, sites: dict[str, WpUpdateSite], runbook: str = RUNBOOK) -> Path:
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    inventory = {
        name: local_site(root, **site.site_vars(backup={"target": f"file://{tmp_path}/store/{name}"}))
        for name, site in sites.items()
    }
    return make_project(root, {"cms-update@1.0.0": runbook}, inventory)


def run(project: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = cli(project, "run", "cms-update", *args, "--output", "json", timeout=TIMEOUT)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON on stdout (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc, doc


def changes(project: Path, site: str, what: str) -> list[dict[str, Any]]:
    """The site's change records of one kind, as the change log (the last entry) keeps them."""
    entry = read_log(project)[-1]
    return [c for c in entry["sites"][site]["changes"] if c.get("what") == what]


def updates_of(project: Path, site: str) -> dict[str, tuple[str | None, str, str]]:
    return {c["component"]: (c["from"], c["to"], c["status"]) for c in changes(project, site, "cms_update")}


def versions(site: WpUpdateSite) -> dict[str, str | None]:
    plugins = json.loads(site.wp("plugin", "list", "--format=json", "--skip-update-check").stdout)
    themes = json.loads(site.wp("theme", "list", "--format=json", "--skip-update-check").stdout)
    found: dict[str, str | None] = {f"plugin:{p['name']}": str(p["version"]) for p in plugins}
    found.update({f"theme:{t['name']}": str(t["version"]) for t in themes})
    found["core"] = site.version_of("core", "wordpress")
    return found


def calls(site: WpUpdateSite) -> list[dict[str, Any]]:
    """What the stand-in noted of its update-db and cache flush calls (with the maintenance state)."""
    path = site.wp_cli.parent / "calls.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def serves(site: WpUpdateSite) -> bool:
    status, body = site.get()
    return status == 200 and site.installed.title in body


def option(server: MariaDBServer, site: WpUpdateSite, name: str) -> str:
    return server.sql(
        f"SELECT option_value FROM wp_options WHERE option_name = '{name}'", site.db.name
    ).strip()


# ------------------------------------------------------------------ one site


def test_a_clean_update_of_core_two_plugins_and_a_theme(
    tmp_path: Path, wp_update_site: WpUpdateSite, wp_update_packages: UpdatePackages
) -> None:
    site = wp_update_site
    before = versions(site)
    project = project_for(tmp_path, {"blog": site})
    proc, doc = run(project, "-p", "plugins=list", "-p", "only=good-plugin,other-plugin", "--ticket", "OPS-5")
    assert proc.returncode == 0, proc.stderr
    assert doc["sites"]["blog"]["status"] == "ok"

    after = versions(site)
    assert after["core"] == wp_update_packages.core_version != before["core"]
    assert (after["plugin:good-plugin"], after["plugin:other-plugin"], after["theme:mt-theme"]) == (
        "1.1",
        "2.1",
        "1.1",
    )
    assert after["plugin:broken-plugin"] == after["plugin:pinned-plugin"] == "1.0"  # not in only
    assert serves(site)

    # the change log: every from -> to, the backup id, the checks
    assert updates_of(project, "blog") == {
        "core": (before["core"], wp_update_packages.core_version, "updated"),
        "plugin:good-plugin": ("1.0", "1.1", "updated"),
        "plugin:other-plugin": ("2.0", "2.1", "updated"),
        "theme:mt-theme": ("1.0", "1.1", "updated"),
    }
    [backup] = changes(project, "blog", "backup")
    assert backup["backup_id"] and backup["files"] > 100
    checks = changes(project, "blog", "health_check")
    assert [c["ok"] for c in checks] == [True, True] and "healthy" in checks[1]["summary"]
    [plan] = changes(project, "blog", "cms_update_plan")
    assert plan["summary"].startswith(
        f"4 updates: core {before['core']} -> {wp_update_packages.core_version}, "
    )
    held = {h["component"]: h["reason"] for h in plan["held"]}
    assert held["plugin:broken-plugin"] == "not selected (not in only)"
    assert read_log(project)[-1]["ticket"] == "OPS-5"
    assert not (site.docroot / ".maintenance").exists()
    # WordPress's upgraders delete .maintenance when they finish: the migrations and the cache flush
    # still ran behind the 503 (issue 5 review, item 1)
    ran = calls(site)
    assert [c["command"] for c in ran] == ["core update-db", "cache flush"]
    assert all(c["maintenance"] for c in ran), ran
    # leftover_maintenance, maintenance_off (it was on, as expected: no warning), maintenance_cleared
    off = [c for c in changes(project, "blog", "maintenance") if c["state"] == "off"]
    assert [c["before"] for c in off] == [False, True, False] and not any("warning" in c for c in off)


def test_a_plugin_update_that_breaks_the_site_is_rolled_back_files_and_database(
    tmp_path: Path, wp_update_site: WpUpdateSite, mariadb_server: MariaDBServer
) -> None:
    site = wp_update_site
    tagline = option(mariadb_server, site, "blogdescription")
    project = project_for(tmp_path, {"blog": site})

    # SIMULATED (see the module docstring): while the site is in maintenance mode for its update, a
    # "migration" changes a row and adds one; the pre-update backup was taken before that
    stop = threading.Event()

    def migrate() -> None:
        while not stop.is_set():
            if (site.docroot / ".maintenance").exists():
                mariadb_server.sql(
                    "UPDATE wp_options SET option_value = 'migrated by 1.1' WHERE option_name = 'blogdescription';"
                    "INSERT INTO wp_options (option_name, option_value, autoload) VALUES ('mt_schema', '1.1', 'no')",
                    site.db.name,
                )
                return
            time.sleep(0.02)

    statuses: list[int] = []

    def poll() -> None:  # what a visitor saw, in order
        while not stop.is_set():
            status = site.get(timeout=10)[0]
            if not statuses or statuses[-1] != status:
                statuses.append(status)
            time.sleep(0.05)

    watcher = threading.Thread(target=migrate, daemon=True)
    watcher.start()
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        proc, doc = run(
            project,
            "-p",
            "core=none",
            "-p",
            "themes=none",
            "-p",
            "plugins=list",
            "-p",
            "only=good-plugin,broken-plugin",
        )
    finally:
        stop.set()
        watcher.join(5)
        poller.join(15)
    assert proc.returncode == 1, proc.stderr
    # the broken site (500) went to 503 before the restore and served (200) only once it was complete
    # (issue 5 review, item 9). A 500 may flash by while tar rewrites a core PHP file in place (a request
    # that loads a half-written file fails before WordPress reaches its maintenance check)
    after_break = statuses[statuses.index(500) :]
    assert after_break[1] == 503 and after_break[-1] == 200 and 200 not in after_break[:-1], statuses
    result = doc["sites"]["blog"]
    assert result["status"] == "failed" and result["rollback"] == "ok"
    assert "post_check" in result["error"] and "500" in result["error"]

    # files and database are back as they were before the update, and the site serves again
    after = versions(site)
    assert (after["plugin:good-plugin"], after["plugin:broken-plugin"]) == ("1.0", "1.0")
    assert option(mariadb_server, site, "blogdescription") == tagline != "migrated by 1.1"
    assert option(mariadb_server, site, "mt_schema") == ""
    assert serves(site)
    assert not (site.docroot / ".maintenance").exists()

    # the change log: what was tried, the backup it went back to, why
    assert set(updates_of(project, "blog")) == {"plugin:broken-plugin", "plugin:good-plugin"}
    [backup] = changes(project, "blog", "backup")
    database, files = changes(project, "blog", "restore")
    assert database["backup_id"] == files["backup_id"] == backup["backup_id"]
    assert database["database"] == site.db.name and files["files"] > 100
    # which components went back to which versions, read back after the restore
    [back] = changes(project, "blog", "cms_rollback")
    assert back["backup_id"] == backup["backup_id"]
    assert {r["component"]: (r["now"], r["back"]) for r in back["components"]} == {
        "plugin:good-plugin": ("1.0", True), "plugin:broken-plugin": ("1.0", True),
    }  # fmt: skip
    failed_check, rolled_back_check = changes(project, "blog", "health_check")[1:]
    assert failed_check["ok"] is False and "answered 500" in failed_check["summary"]
    assert "PHP Fatal error" in failed_check["summary"]  # quoted from the site's error log
    assert rolled_back_check["ok"] is True
    steps = {(s["section"], s["id"]): s["status"] for s in read_log(project)[-1]["sites"]["blog"]["steps"]}
    assert steps[("steps", "post_check")] == "failed"
    assert steps[("rollback", "restore")] == steps[("rollback", "rollback_check")] == "ok"
    assert ("undo", "maintenance_on") not in steps  # the rollback section keeps the 503, not an undo
    order = [s["id"] for s in read_log(project)[-1]["sites"]["blog"]["steps"] if s["section"] == "rollback"]
    assert order == ["rollback_maintenance_on", "restore_database", "restore", "rollback_versions",
                     "rollback_maintenance_off", "rollback_check"]  # fmt: skip


def test_one_by_one_keeps_the_good_updates_and_rolls_back_only_the_culprit(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    site = wp_update_site
    project = project_for(tmp_path, {"blog": site})
    only = "only=good-plugin,broken-plugin,other-plugin"
    proc, doc = run(
        project,
        "-p",
        "core=none",
        "-p",
        "themes=none",
        "-p",
        "plugins=list",
        "-p",
        only,
        "-p",
        "one_by_one=true",
    )
    assert proc.returncode == 0, proc.stderr
    assert doc["sites"]["blog"]["status"] == "ok"

    after = versions(site)
    assert (after["plugin:good-plugin"], after["plugin:other-plugin"]) == ("1.1", "2.1")
    assert after["plugin:broken-plugin"] == "1.0"
    assert serves(site)
    # no directory left aside, no whole-site restore
    assert not [p for p in (site.docroot / "wp-content" / "plugins").iterdir() if p.name.startswith(".")]
    assert changes(project, "blog", "restore") == []

    records = {c["component"]: c for c in changes(project, "blog", "cms_update")}
    assert {k: c["status"] for k, c in records.items()} == {
        "plugin:broken-plugin": "rolled_back",
        "plugin:good-plugin": "updated",
        "plugin:other-plugin": "updated",
    }
    culprit = records["plugin:broken-plugin"]
    assert "500" in culprit["cause"] and culprit["installed"] == "1.0"
    [backup] = changes(project, "blog", "backup")
    assert culprit["backup_id"] == backup["backup_id"]


def test_one_by_one_with_rolled_back_fails_exits_1_and_keeps_the_good_updates(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    site = wp_update_site
    project = project_for(tmp_path, {"blog": site})
    args = [
        "-p",
        "core=none",
        "-p",
        "themes=none",
        "-p",
        "plugins=list",
        "-p",
        "only=broken-plugin,good-plugin",
    ]
    proc, doc = run(project, *args, "-p", "one_by_one=true", "-p", "rolled_back_fails=true")
    assert proc.returncode == 1, proc.stderr
    assert (
        "rolled_back_fails" in doc["sites"]["blog"]["error"]
        and "broken-plugin" in doc["sites"]["blog"]["error"]
    )
    after = versions(site)
    assert (after["plugin:good-plugin"], after["plugin:broken-plugin"]) == ("1.1", "1.0")
    assert serves(site)


def test_an_excluded_plugin_stays_and_addons_follow_their_dependency(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    site = wp_update_site
    project = project_for(tmp_path, {"blog": site})
    proc, _doc = run(
        project, "-p", "core=none", "-p", "themes=none", "-p", "exclude=pinned-plugin,broken-plugin"
    )
    assert proc.returncode == 0, proc.stderr
    after = versions(site)
    assert (after["plugin:pinned-plugin"], after["plugin:broken-plugin"]) == ("1.0", "1.0")
    assert (after["plugin:good-plugin"], after["plugin:addon-plugin"], after["plugin:future-plugin"]) == (
        "1.1", "1.1", "1.0",
    )  # fmt: skip
    [plan] = changes(project, "blog", "cms_update_plan")
    held = {h["component"]: h["reason"] for h in plan["held"]}
    assert held["plugin:pinned-plugin"] == held["plugin:broken-plugin"] == "excluded"
    assert held["plugin:future-plugin"].startswith("needs WordPress 9.9")
    order = [c["component"] for c in changes(project, "blog", "cms_update")]
    assert order.index("plugin:good-plugin") < order.index("plugin:addon-plugin")


def test_a_leftover_maintenance_file_is_cleared_and_recorded(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    site = wp_update_site
    leftover = site.docroot / ".maintenance"
    # 11 minutes old: an update that died; WordPress itself no longer honours it
    leftover.write_text(f"<?php $upgrading = {int(time.time()) - 660}; ?>")
    project = project_for(tmp_path, {"blog": site})
    proc, _doc = run(
        project, "-p", "core=none", "-p", "themes=none", "-p", "plugins=list", "-p", "only=good-plugin"
    )
    assert proc.returncode == 0, proc.stderr
    assert not leftover.exists() and serves(site)
    first = changes(project, "blog", "maintenance")[0]
    assert first["state"] == "off" and first["before"] is True
    assert versions(site)["plugin:good-plugin"] == "1.1"


def test_a_fresh_maintenance_file_refuses_the_site_unless_clear_maintenance(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    site = wp_update_site
    marker = site.docroot / ".maintenance"
    marker.write_text(f"<?php $upgrading = {int(time.time()) - 30}; ?>")  # another update, 30 s ago
    assert site.get()[0] == 503
    project = project_for(tmp_path, {"blog": site})
    selection = ["-p", "core=none", "-p", "themes=none", "-p", "plugins=list", "-p", "only=good-plugin"]

    proc, doc = run(project, *selection, "--dry-run")
    leftover = next(s for s in doc["sites"]["blog"]["steps"] if s["id"] == "leftover_maintenance")
    assert "would REFUSE" in leftover["preview"]["summary"]

    proc, doc = run(project, *selection)
    assert proc.returncode == 1, proc.stderr
    error = doc["sites"]["blog"]["error"]
    assert "maintenance mode" in error and "s ago" in error and "clear_maintenance=true" in error
    assert marker.exists() and site.get()[0] == 503  # left as it was: nothing changed
    assert versions(site)["plugin:good-plugin"] == "1.0"
    assert changes(project, "blog", "backup") == []

    proc, doc = run(project, *selection, "-p", "clear_maintenance=true")
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists() and serves(site)
    assert versions(site)["plugin:good-plugin"] == "1.1"


def test_a_typo_in_only_fails_before_the_backup_and_exclude_typos_show(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    site = wp_update_site
    project = project_for(tmp_path, {"blog": site})
    base = ["-p", "core=none", "-p", "themes=none"]
    proc, doc = run(project, *base, "-p", "plugins=list", "-p", "only=good-plugin,godo-plugin")
    assert proc.returncode == 1, proc.stderr
    assert (
        "'godo-plugin'" in doc["sites"]["blog"]["error"]
        and "nothing was changed" in doc["sites"]["blog"]["error"]
    )
    assert changes(project, "blog", "backup") == []
    assert versions(site)["plugin:good-plugin"] == "1.0"
    # an exclude typo does not fail, but the text output says it (and how to apply this exact plan)
    text = cli(
        project, "run", "cms-update", *base, "-p", "exclude=brokn-plugin", "--dry-run", timeout=TIMEOUT
    )
    assert text.returncode == 0, text.stderr
    shown = text.stdout + text.stderr
    assert "NOTE: exclude names 'brokn-plugin', which is not installed" in shown
    assert "-p plan=plan.json" in shown


def test_a_closed_progress_pipe_does_not_stop_the_run_or_its_record(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    """`maintainer run ... 2>&1 | head -3`: the reader of the progress goes away at once."""
    site = wp_update_site
    project = project_for(tmp_path, {"blog": site})
    proc = subprocess.Popen(
        [MAINTAINER, "--project", str(project), "run", "cms-update", "-p", "core=none", "-p", "themes=none",
         "-p", "plugins=list", "-p", "only=good-plugin", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "MAINTAINER_OPERATOR": "tester"},
    )  # fmt: skip
    assert proc.stderr is not None
    proc.stderr.close()
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, out
    assert json.loads(out)["sites"]["blog"]["status"] == "ok"
    entry = read_log(project)[-1]
    assert entry["status"] == "ok" and entry["sites"]["blog"]["status"] == "ok"
    assert versions(site)["plugin:good-plugin"] == "1.1" and serves(site)


def test_sighup_mid_update_rolls_back_and_records(tmp_path: Path, wp_update_site: WpUpdateSite) -> None:
    """The SSH session dropped (SIGHUP) while the site was in maintenance mode for its update."""
    site = wp_update_site
    project = project_for(tmp_path, {"blog": site})
    proc = subprocess.Popen(
        [MAINTAINER, "--project", str(project), "run", "cms-update", "-p", "core=none", "-p", "themes=none",
         "-p", "plugins=list", "-p", "only=good-plugin,other-plugin"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "MAINTAINER_OPERATOR": "tester"},
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while (
        not (site.docroot / ".maintenance").exists() and proc.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    entry = read_log(project)[-1]
    assert entry["status"] == "interrupted" and entry["sites"]["blog"]["status"] == "interrupted"
    assert not (site.docroot / ".maintenance").exists() and serves(site)
    after = versions(site)
    assert (after["plugin:good-plugin"], after["plugin:other-plugin"]) == ("1.0", "2.0")


def test_a_site_locked_by_another_run_is_skipped(tmp_path: Path, wp_update_site: WpUpdateSite) -> None:
    site = wp_update_site
    project = project_for(tmp_path, {"blog": site})
    info = {"holder": "someone@elsewhere", "run_id": "other-run", "runbook": "cms-update@1.0.0",
            "since": "2026-01-01T00:00:00Z", "pid": os.getpid()}  # fmt: skip
    lock = locks.acquire(LocalTransport(), "blog", info, lock_dir=str(project / "locks"), ttl=600)
    try:
        proc, doc = run(project)
    finally:
        locks.release(lock)
    assert proc.returncode == 3, proc.stderr
    assert doc["sites"]["blog"]["status"] == "locked" and "someone@elsewhere" in doc["sites"]["blog"]["error"]
    assert versions(site)["plugin:good-plugin"] == "1.0"
    assert not (tmp_path / "store" / "blog").exists()


def test_plugins_security_updates_exactly_the_vulnerable_one_to_the_first_fixed_version(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    site = wp_update_site
    site.source.publish("plugins", "good-plugin", "1.2")  # newer than the fix: the plan must not take it
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps({"format": "maintainer-vulnfeed", "version": 1, "advisories": [
        {"id": "MT-2026-0001", "type": "plugin", "slug": "good-plugin", "affected": "<1.1", "fixed_in": "1.1",
         "severity": "high", "title": "Good Plugin < 1.1 - Stored XSS"},
    ]}))  # fmt: skip
    before = versions(site)
    project = project_for(tmp_path, {"blog": site})
    proc, _doc = run(
        project,
        "-p",
        "core=security",
        "-p",
        "plugins=security",
        "-p",
        "themes=security",
        "-p",
        f"feed={feed}",
    )
    assert proc.returncode == 0, proc.stderr
    after = versions(site)
    assert after["plugin:good-plugin"] == "1.1"
    assert {k: v for k, v in after.items() if k != "plugin:good-plugin"} == {
        k: v for k, v in before.items() if k != "plugin:good-plugin"
    }
    assert updates_of(project, "blog") == {"plugin:good-plugin": ("1.0", "1.1", "updated")}
    [update] = changes(project, "blog", "cms_update")
    assert update["advisories"] == ["MT-2026-0001"]
    assert update["feed_sha256"] == hashlib.sha256(feed.read_bytes()).hexdigest()


# ------------------------------------------------------------------ several sites


@pytest.fixture
def update_sites(
    request: pytest.FixtureRequest,
    wp_update_base: UpdateBase,
    wp_update_packages: UpdatePackages,
    mariadb_server: MariaDBServer,
    wp_checksums: dict[str, Any],
) -> Iterator[list[WpUpdateSite]]:
    """Three private update sites (each its own files, database, source and web server)."""
    with ExitStack() as stack:
        sites = []
        for _ in range(getattr(request, "param", 3)):
            directory = Path(tempfile.mkdtemp(prefix="maintainer-wp-update-site-"))
            directory.chmod(0o755)
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
            sites.append(
                stack.enter_context(
                    update_site(wp_update_base, wp_update_packages, mariadb_server, wp_checksums, directory)
                )
            )
        yield sites


def test_dry_run_lists_from_and_to_per_site_and_changes_nothing(
    tmp_path: Path, update_sites: list[WpUpdateSite]
) -> None:
    one, two, _ = update_sites
    two.source.withdraw("plugins", "other-plugin")  # the two sites are offered different updates
    project = project_for(tmp_path, {"one": one, "two": two})
    proc, doc = run(project, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert doc["dry_run"] is True
    previews = {
        name: next(s["preview"] for s in plan["steps"] if s["id"] == "plan")
        for name, plan in doc["sites"].items()
    }
    assert "plugin good-plugin 1.0 -> 1.1" in previews["one"]["summary"]
    assert "plugin other-plugin 2.0 -> 2.1" in previews["one"]["summary"]
    assert "other-plugin" not in previews["two"]["summary"].split("held")[0]
    records = {r["component"]: (r["from"], r["to"]) for r in previews["one"]["plan"]}
    assert records["plugin:good-plugin"] == ("1.0", "1.1")
    assert versions(one)["plugin:good-plugin"] == "1.0"
    assert not (tmp_path / "store").exists()


def test_a_plugin_that_breaks_the_canary_stops_the_rollout(
    tmp_path: Path, update_sites: list[WpUpdateSite]
) -> None:
    project = project_for(tmp_path, {f"site{i}": s for i, s in enumerate(update_sites, 1)})
    proc, doc = run(
        project, "-p", "core=none", "-p", "themes=none", "-p", "plugins=list", "-p", "only=broken-plugin"
    )
    assert proc.returncode == 1, proc.stderr
    statuses = {name: r["status"] for name, r in doc["sites"].items()}
    assert statuses == {"site1": "failed", "site2": "skipped", "site3": "skipped"}
    assert "canary" in doc["sites"]["site2"]["error"]
    assert all(serves(s) for s in update_sites)
    assert [versions(s)["plugin:broken-plugin"] for s in update_sites] == ["1.0", "1.0", "1.0"]


def test_max_fail_stops_the_rollout(tmp_path: Path, update_sites: list[WpUpdateSite]) -> None:
    # two sites per batch and no failure allowed (the shipped runbook's canary is tested above);
    # in the first batch one site is fine (its source does not offer the broken release)
    runbook = RUNBOOK.replace('serial: [1, "25%"]', "serial: 2").replace('max_fail: "10%"', "max_fail: 0")
    assert runbook != RUNBOOK
    ok, bad, third = update_sites
    ok.source.withdraw("plugins", "broken-plugin")
    project = project_for(tmp_path, {"ok": ok, "bad": bad, "third": third}, runbook)
    proc, doc = run(
        project,
        "-p",
        "core=none",
        "-p",
        "themes=none",
        "-p",
        "plugins=list",
        "-p",
        "only=broken-plugin,good-plugin",
    )
    assert proc.returncode == 1, proc.stderr
    statuses = {name: r["status"] for name, r in doc["sites"].items()}
    assert statuses == {"ok": "ok", "bad": "failed", "third": "skipped"}
    assert "max_fail" in doc["sites"]["third"]["error"]
    assert versions(third)["plugin:good-plugin"] == "1.0"
    assert versions(ok)["plugin:good-plugin"] == "1.1"


def test_security_patch_updates_exactly_the_vulnerable_components_through_the_safe_flow(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    """security-patch 1.1.0 with cms_update=vulnerable: its CMS steps, rollback and finally (its
    OS-package steps need an apt sandbox: see test_security_patch.py), a WordPress and a static site."""
    site = wp_update_site
    shipped = yaml.safe_load((REPO / "runbooks" / "security-patch" / "1.1.0.yml").read_text())
    runbook = {
        "schema": 1, "name": "cms-security", "version": "1.0.0", "description": "the CMS steps of security-patch",
        "params": {k: v for k, v in shipped["params"].items() if k.startswith(("cms", "vulnerability", "max", "clear"))},
        "steps": [s for s in shipped["steps"] if str(s["id"]).startswith("cms_")],
        "rollback": shipped["rollback"],
        "finally": shipped["finally"],
    }  # fmt: skip
    site.source.publish("plugins", "good-plugin", "1.2")
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps({"format": "maintainer-vulnfeed", "version": 1, "advisories": [
        {"id": "MT-2026-0002", "type": "plugin", "slug": "good-plugin", "affected": "<1.1", "fixed_in": "1.1",
         "severity": "critical"},
    ]}))  # fmt: skip
    static_root = tmp_path / "static"
    static_root.mkdir()
    (static_root / "index.html").write_text("<h1>Brochure</h1>")
    before = versions(site)
    root = tmp_path / "project"
    root.mkdir()
    project = make_project(
        root,
        {"cms-security@1.0.0": yaml.safe_dump(runbook)},
        {
            "blog": local_site(root, **site.site_vars(backup={"target": f"file://{tmp_path}/store/blog"})),
            # site_url: the shipped runbook's health step checks every site
            "brochure": local_site(
                root, docroot=str(static_root), cms="static", site_url=f"file://{static_root}/index.html"
            ),
        },
    )
    proc = cli(project, "run", "cms-security", "-p", f"vulnerability_feed={feed}", "-p", "cms_update=vulnerable",
               "-o", "json", timeout=TIMEOUT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["sites"]["blog"]["status"] == doc["sites"]["brochure"]["status"] == "ok"
    after = versions(site)
    assert after["plugin:good-plugin"] == "1.1"
    assert {k: v for k, v in after.items() if k != "plugin:good-plugin"} == {
        k: v for k, v in before.items() if k != "plugin:good-plugin"
    }
    assert updates_of(project, "blog") == {"plugin:good-plugin": ("1.0", "1.1", "updated")}
    assert changes(project, "blog", "backup") and changes(project, "brochure", "backup") == []
    assert serves(site)


def test_a_dry_run_plan_is_applied_exactly_later_and_refused_when_the_site_moved(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    site = wp_update_site
    project = project_for(tmp_path, {"blog": site})
    selection = [
        "-p",
        "core=none",
        "-p",
        "themes=none",
        "-p",
        "plugins=list",
        "-p",
        "only=good-plugin,other-plugin",
    ]
    proc, _doc = run(project, *selection, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    plan_file = tmp_path / "approved-plan.json"
    plan_file.write_text(proc.stdout)

    # a minute later the source offers something newer: the approved plan still says 1.1
    site.source.publish("plugins", "good-plugin", "1.2")
    proc, _doc = run(project, "-p", f"plan={plan_file}")
    assert proc.returncode == 0, proc.stderr
    assert updates_of(project, "blog") == {
        "plugin:good-plugin": ("1.0", "1.1", "updated"),
        "plugin:other-plugin": ("2.0", "2.1", "updated"),
    }
    assert versions(site)["plugin:good-plugin"] == "1.1"

    # plan= with a selection that it would silently ignore: bad input, nothing runs
    conflicting = cli(project, "run", "cms-update", "-p", f"plan={plan_file}", "-p", "exclude=other-plugin")
    assert conflicting.returncode == 2, conflicting.stderr
    assert "runbook param 'plan'" in conflicting.stderr and "exclude=other-plugin" in conflicting.stderr

    # the same plan again: good-plugin is no longer at 1.0, so nothing is touched
    proc, doc = run(project, "-p", f"plan={plan_file}")
    assert proc.returncode == 1
    assert "plugin:good-plugin is 1.1, the plan says 1.0" in doc["sites"]["blog"]["error"]
    assert changes(project, "blog", "backup") == []


def test_security_patch_cms_checks_fail_still_fails_on_what_the_update_did_not_fix(
    tmp_path: Path, wp_update_site: WpUpdateSite
) -> None:
    """cms_checks=fail with cms_update=vulnerable: the fixed vulnerability is excused, an integrity
    finding and a vulnerability without a fix are not (issue 6 item 3 review)."""
    site = wp_update_site
    shipped = yaml.safe_load((REPO / "runbooks" / "security-patch" / "1.1.0.yml").read_text())
    runbook = {
        "schema": 1, "name": "cms-security", "version": "1.0.0", "description": "the CMS steps of security-patch",
        "params": {k: v for k, v in shipped["params"].items() if k.startswith(("cms", "vulnerability", "max", "clear"))},
        "steps": [s for s in shipped["steps"] if str(s["id"]).startswith("cms_")],
        "rollback": shipped["rollback"],
        "finally": shipped["finally"],
    }  # fmt: skip
    (site.docroot / "wp-includes" / "mt-added.php").write_text("<?php // not part of WordPress\n")
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps({"format": "maintainer-vulnfeed", "version": 1, "advisories": [
        {"id": "MT-2026-0003", "type": "plugin", "slug": "good-plugin", "affected": "<1.1", "fixed_in": "1.1",
         "severity": "high"},
        {"id": "MT-2026-0004", "type": "plugin", "slug": "other-plugin", "affected": "<=9", "severity": "medium"},
    ]}))  # fmt: skip
    root = tmp_path / "project"
    root.mkdir()
    project = make_project(
        root,
        {"cms-security@1.0.0": yaml.safe_dump(runbook)},
        {"blog": local_site(root, **site.site_vars(backup={"target": f"file://{tmp_path}/store/blog"}))},
    )
    proc = cli(project, "run", "cms-security", "-p", f"vulnerability_feed={feed}", "-p", "cms_update=vulnerable",
               "-p", "cms_checks=fail", "-o", "json", timeout=TIMEOUT)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    error = json.loads(proc.stdout)["sites"]["blog"]["error"]
    assert "cms_checks=fail" in error and "MT-2026-0003" not in error, error
    assert "not fixed by this run: MT-2026-0004" in error, error  # the fixed MT-2026-0003 is excused
    assert versions(site)["plugin:good-plugin"] == "1.1" and serves(site)  # the fix itself stays
    update = changes(project, "blog", "cms_update")[0]
    assert update["advisories"] == ["MT-2026-0003"]
