"""The shipped perf-tune runbook against real nginx + PHP-FPM serving WordPress (tests/servers/web.py).

The loads are small (a few dozen requests) to keep CI quick, and the thresholds generous: this
machine's CPUs are shared, so two measurements of the same config can differ by a third. The
slow config (OPcache off, one PHP worker) is several times slower, far beyond them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from tests.helpers import REPO, cli, local_site, make_project, process_alive, read_log
from tests.servers.web import WebServer

LOAD = ["-p", "requests=16", "-p", "concurrency=4", "-p", "warmup=4"]


def project(root: Path, web: WebServer, **site_vars: Any) -> Path:
    """The shipped runbooks and templates, and one inventory with the test site."""
    root.mkdir()
    for name in ("runbooks", "templates"):
        shutil.copytree(REPO / name, root / name)
    return make_project(root, {}, {"wp": local_site(root, **web.site_vars(**site_vars))})


def configs(web: WebServer) -> dict[str, str | None]:
    """sha256 of each config perf-tune manages (None: absent)."""
    files = {
        "nginx": web.nginx_conf,
        "php_fpm": web.pool_file,
        "opcache": web.php_conf_d / "90-maintainer-opcache.ini",
        "mariadb": web.mariadb_cnf,
    }
    return {k: hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for k, p in files.items()}


def steps_of(entry: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in entry["sites"]["wp"]["steps"]}


def test_the_dry_run_shows_facts_tuned_values_with_reasons_and_diffs_and_changes_nothing(
    tmp_path: Path, web_server: WebServer
) -> None:
    proj = project(tmp_path / "p", web_server)
    before = configs(web_server)
    result = cli(proj, "run", "perf-tune", "--dry-run", "--output", "json", *LOAD)
    assert result.returncode == 0, result.stderr
    steps = {s["id"]: s for s in json.loads(result.stdout)["sites"]["wp"]["steps"]}
    facts = steps["facts"]["preview"]
    assert facts["cpus"] >= 1 and facts["php_version"].startswith("8.") and facts["nginx_version"]
    assert facts["php_workers"] >= 1 and facts["php_pool"] == "site"
    tune = steps["tune"]["preview"]
    assert set(tune["changed_components"]) == {"nginx", "php_fpm", "opcache", "mariadb"}
    children = tune["tuning"]["pm_max_children"]
    assert "MB per worker" in children["reason"] and "per CPU" in children["reason"]
    diff = tune["diff"]
    # the values and their reasons, as the files will say them
    assert f"+pm.max_children = {children['value']}" in diff and f"+; {children['reason']}" in diff
    assert "+opcache.enable=1" in diff and "+    gzip on;" in diff and "+innodb_buffer_pool_size = " in diff
    assert "-pm.max_children = 5" in diff  # the fixture's untuned pool
    assert configs(web_server) == before and read_log(proj) == []

    text = cli(proj, "run", "perf-tune", "--dry-run", *LOAD)  # what an engineer reads
    assert text.returncode == 0, text.stderr
    assert f"+; {children['reason']}" in text.stdout and "PHP-FPM 8." in text.stdout


def test_a_good_change_is_kept_applied_by_graceful_reloads_and_recorded(
    tmp_path: Path, web_server: WebServer
) -> None:
    proj = project(tmp_path / "p", web_server)
    untuned = configs(web_server)
    assert web_server.php_settings()["opcache_interned_strings_buffer"] == "8"  # Debian's default
    pids = (web_server.nginx_pid, web_server.fpm_pid)

    result = cli(
        proj, "run", "perf-tune", "--output", "json", *LOAD, "-p", "max_children=6", "-p", "threshold=200"
    )
    assert result.returncode == 0, result.stderr
    entry = read_log(proj)[-1]
    assert entry["sites"]["wp"]["status"] == "ok"
    assert steps_of(entry) == {
        "before": "ok", "facts": "ok", "tune": "ok", "reload_nginx": "ok", "reload_php_fpm": "ok",
        "restart_mariadb": "skipped", "mariadb_pending": "ok", "check": "ok", "after": "ok", "compare": "ok",
    }  # fmt: skip
    tuned = configs(web_server)
    assert all(tuned[k] != untuned[k] for k in tuned)
    assert "pm.max_children = 6\n" in web_server.pool_file.read_text()
    # the servers run the new configs, reloaded in place: same masters, the site never went away
    assert web_server.php_settings()["opcache_interned_strings_buffer"] == "16"
    assert all(process_alive(pid) for pid in pids)
    assert web_server.get()[0] == 200

    changes = entry["sites"]["wp"]["changes"]
    files = {c["component"]: c for c in changes if c["kind"] == "file"}
    assert set(files) == {"nginx", "php_fpm", "opcache", "mariadb"}
    assert (
        "+pm.max_children = 6" in files["php_fpm"]["diff"]
        and "pinned by runbook overrides" in files["php_fpm"]["diff"]
    )
    assert files["php_fpm"]["after_sha256"] == tuned["php_fpm"]
    measured = {c["label"]: c for c in changes if c["kind"] == "measurement"}
    assert set(measured) == {"before", "after"}
    assert all(m["requests"] == 16 and m["errors"] == 0 and m["rps"] > 0 for m in measured.values())
    verdict = next(c for c in changes if c["kind"] == "perf_verdict")
    assert verdict["verdict"] == "kept"
    assert verdict["metrics"]["rps"]["before"] == measured["before"]["rps"]

    # run again: the same values, so nothing changes, nothing reloads, nothing is measured twice
    again = cli(
        proj, "run", "perf-tune", "--output", "json", *LOAD, "-p", "max_children=6", "-p", "threshold=200"
    )
    assert again.returncode == 0, again.stderr
    assert configs(web_server) == tuned
    second = steps_of(read_log(proj)[-1])
    assert second["tune"] == "ok" and second["reload_php_fpm"] == "skipped" and second["after"] == "skipped"
    assert cli(proj, "log", "verify").returncode == 0


def test_a_config_that_fails_validation_is_not_installed_and_the_site_keeps_serving(
    tmp_path: Path, web_server: WebServer
) -> None:
    # a pool line php-fpm refuses
    proj = project(tmp_path / "p", web_server, php_fpm_pool_extra=["pm.bogus = 1"])
    untuned = configs(web_server)
    # the dry run validates the rendered configs too (on temp copies) and says so; it still exits 0
    preview = cli(proj, "run", "perf-tune", "--dry-run", "--output", "json")
    assert preview.returncode == 0, preview.stderr
    assert "would be rejected by validation: php_fpm (rc " in preview.stdout
    assert configs(web_server) == untuned
    result = cli(proj, "run", "perf-tune", "--output", "json", "-p", "requests=10", "-p", "warmup=0")
    assert result.returncode == 1, result.stderr
    site = json.loads(result.stdout)["sites"]["wp"]
    assert site["status"] == "failed"
    assert "php_fpm: validation of" in site["error"] and "pm.bogus" in site["error"]
    assert "nothing was installed" in site["error"]
    # not one file installed, not even the valid nginx.conf validated before it; nothing reloaded
    assert configs(web_server) == untuned
    steps = steps_of(read_log(proj)[-1])
    assert steps["tune"] == "failed" and "reload_nginx" not in steps and "reload_nginx_previous" in steps
    assert steps["reload_nginx_previous"] == "skipped" and steps["check_previous"] == "skipped"
    assert web_server.get()[0] == 200
    assert web_server.php_settings()["opcache_interned_strings_buffer"] == "8"


def test_a_slower_config_is_rolled_back_by_measurement(tmp_path: Path, web_server: WebServer) -> None:
    # a valid config that makes every request slower: one PHP worker for four clients at a time, and a
    # pool line that adds 0.1 s to each request (slow for sure, however busy this machine's CPUs are)
    slow = web_server.workdir / "slow.php"
    slow.write_text("<?php usleep(100000);\n")
    proj = project(
        tmp_path / "p",
        web_server,
        perf_tuning={"pm_max_children": 1},
        php_fpm_pool_extra=[f"php_admin_value[auto_prepend_file] = {slow}"],
    )
    untuned = configs(web_server)
    master = web_server.fpm_pid
    result = cli(
        proj, "run", "perf-tune", "--output", "json", "-p", "requests=10", "-p", "concurrency=4",
        "-p", "warmup=2", "-p", "threshold=50",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    site = json.loads(result.stdout)["sites"]["wp"]
    assert site["status"] == "failed" and site["rollback"] == "ok"
    assert "slower after the change, beyond 50%" in site["error"]

    # the previous configs are back (the OPcache ini that did not exist is gone) and running again
    assert configs(web_server) == untuned
    settings = web_server.php_settings()
    assert settings["auto_prepend_file"] == "" and settings["opcache_interned_strings_buffer"] == "8"
    assert process_alive(master) and web_server.get()[0] == 200

    entry = read_log(proj)[-1]
    steps = steps_of(entry)
    assert (
        steps["compare"] == "failed"
        and steps["reload_php_fpm_previous"] == "ok"
        and steps["check_previous"] == "ok"
    )
    undo = [s for s in entry["sites"]["wp"]["steps"] if s["section"] == "undo"]
    assert [s["id"] for s in undo] == ["tune"] and undo[0]["status"] == "ok"
    # the log keeps both measurements, and the error says by how much it got worse
    measured = {c["label"]: c for c in entry["sites"]["wp"]["changes"] if c["kind"] == "measurement"}
    assert measured["after"]["ttfb_p50_ms"] > 1.5 * measured["before"]["ttfb_p50_ms"]
    assert "req/s" in entry["sites"]["wp"]["error"]
    # and the verdict that rolled it back: before/after figures and what got worse
    (verdict,) = [c for c in entry["sites"]["wp"]["changes"] if c["kind"] == "perf_verdict"]
    assert verdict["verdict"] == "worse" and "ttfb_p50_ms" in verdict["worse"]
    assert verdict["before"]["ttfb_p50_ms"] == measured["before"]["ttfb_p50_ms"]
    assert verdict["summary"].startswith("rolled back, worse beyond 50%")


def test_a_pin_out_of_range_is_bad_input_before_anything_runs(tmp_path: Path, web_server: WebServer) -> None:
    proj = project(tmp_path / "p", web_server, perf_tuning={"pm_max_children": 0})
    untuned = configs(web_server)
    for extra in (["--dry-run"], []):
        result = cli(proj, "run", "perf-tune", *extra)
        assert result.returncode == 2, result.stderr
        assert "pm_max_children=0 (must be at least 1)" in result.stderr
    assert configs(web_server) == untuned


def test_an_unknown_pin_is_bad_input_before_anything_runs(tmp_path: Path) -> None:
    proj = tmp_path / "p"
    proj.mkdir()
    shutil.copytree(REPO / "runbooks", proj / "runbooks")
    make_project(
        proj, {}, {"wp": local_site(proj, site_url="http://127.0.0.1:9/", perf_tuning={"pm_max_childs": 3})}
    )
    result = cli(proj, "run", "perf-tune", "--dry-run")
    assert result.returncode == 2
    assert "pm_max_childs (did you mean pm_max_children?)" in result.stderr


def test_a_site_that_does_not_answer_fails_before_anything_changes(tmp_path: Path) -> None:
    proj = tmp_path / "p"
    proj.mkdir()
    for name in ("runbooks", "templates"):
        shutil.copytree(REPO / name, proj / name)
    make_project(proj, {}, {"wp": local_site(proj, site_url="http://127.0.0.1:9/")})
    result = cli(proj, "run", "perf-tune", "--output", "json", "-p", "requests=10", "-p", "warmup=0")
    assert result.returncode == 1, result.stderr
    site = json.loads(result.stdout)["sites"]["wp"]
    assert "10 of 10 requests to http://127.0.0.1:9/ failed" in site["error"]
    steps = steps_of(read_log(proj)[-1])
    assert steps["before"] == "failed" and "tune" not in steps
    # the rollback steps read the configs step that never ran: skipped, not failed
    assert {steps[s] for s in ("reload_nginx_previous", "reload_php_fpm_previous", "check_previous")} == {
        "skipped"
    }
