"""The shipped perf-tune runbook against real nginx + PHP-FPM serving WordPress (tests/servers/web.py).

The loads are small (a few dozen requests) to keep CI quick, and the thresholds generous: this
machine's CPUs are shared, so two measurements of the same config can differ by a third. The
slow config (OPcache off, one PHP worker) is several times slower, far beyond them.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from maintainer import templating
from maintainer.perf import facts, merge, tuning
from tests.helpers import REPO, cli, local_site, make_project, process_alive, read_log
from tests.servers.web import WebServer, php_fpm_binary

LOAD = ["-p", "requests=16", "-p", "concurrency=4", "-p", "warmup=4"]
#: the fixture's untuned values: the only lines of its nginx.conf and pool file a tuning replaces
UNTUNED_LINES = {
    "worker_processes 1;", "    worker_connections 256;", "    keepalive_timeout 5;",
    "pm.max_children = 5", "pm.start_servers = 2", "pm.min_spare_servers = 1", "pm.max_spare_servers = 3",
}  # fmt: skip
#: a host with 2 CPUs and 4 GB RAM, for rendering without one
FACTS = facts.parse(
    "cpus=2\nmem_total_kb=4000000\nphp_version=PHP 8.2.1 (fpm-fcgi)\nnginx_version=nginx/1.22.1\n",
    pool="www",
    docroot=None,
)


def project(root: Path, web: WebServer, **site_vars: Any) -> Path:
    """The shipped runbooks and templates, and one inventory with the test site.

    The previous configs are kept in ``root/config-backups`` (not this machine's ~/.maintainer).
    """
    root.mkdir()
    for name in ("runbooks", "templates"):
        shutil.copytree(REPO / name, root / name)
    site_vars.setdefault("maintainer_config_backup_dir", str(root / "config-backups"))
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


def removed_lines(diff: str) -> set[str]:
    return {line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")}


def add_operator_settings(web: WebServer) -> Path:
    """Lines an operator put in nginx.conf and the pool file (the fixture's servers have not loaded them)."""
    nginx = web.nginx_conf.read_text()
    web.nginx_conf.write_text(
        nginx.replace(
            "    keepalive_timeout 5;\n",
            "    keepalive_timeout 5;\n    client_max_body_size 200m;\n    add_header X-Operator nginx-kept always;\n",
        )
    )
    prepend = web.workdir / "operator.php"
    prepend.write_text("<?php header('X-Operator-Pool: pool-kept');\n")
    with web.pool_file.open("a") as pool:
        pool.write(f"; the operator's own\nphp_admin_value[auto_prepend_file] = {prepend}\n")
    return prepend


def headers(web: WebServer) -> dict[str, str]:
    with urllib.request.urlopen(web.url, timeout=10) as response:
        return {k.lower(): v for k, v in response.headers.items()}


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
    assert f"+pm.max_children = {children['value']}" in diff
    assert f"+; maintainer: {children['reason']}" in diff
    assert "+opcache.enable=1" in diff and "+    gzip on;" in diff and "+innodb_buffer_pool_size = " in diff
    # nginx.conf and the pool file lose no line but the untuned values (the OPcache and MariaDB files are new)
    assert removed_lines(diff) == UNTUNED_LINES
    assert tune["applied_components"] == ["nginx", "php_fpm", "opcache"]
    assert tune["pending_restart"] == ["mariadb"]
    assert "would change mariadb, pending restart: MariaDB reads it when it starts" in tune["summary"]
    assert configs(web_server) == before and read_log(proj) == []

    text = cli(proj, "run", "perf-tune", "--dry-run", *LOAD)  # what an engineer reads
    assert text.returncode == 0, text.stderr
    assert f"+; maintainer: {children['reason']}" in text.stdout and "PHP-FPM 8." in text.stdout


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
    # MariaDB's file is installed, but MariaDB reads it only when it starts: not claimed as measured
    assert verdict["measured"] == ["nginx", "php_fpm", "opcache"] and verdict["not_measured"] == ["mariadb"]
    assert verdict["summary"].endswith("; not measured: mariadb (pending restart)")
    assert files["mariadb"]["pending_restart"] is True and files["nginx"]["pending_restart"] is False
    assert "pending restart: MariaDB reads it when it starts" in files["mariadb"]["summary"]

    # the previous files are kept in one folder of this run, none beside the configs
    folder = proj / "config-backups" / entry["run_id"]
    assert files["nginx"]["backup"] == str(folder / str(web_server.nginx_conf).lstrip("/"))
    assert hashlib.sha256(Path(files["nginx"]["backup"]).read_bytes()).hexdigest() == untuned["nginx"]
    assert (
        list(web_server.workdir.rglob("*.bak")) == [] and list(web_server.workdir.rglob("*.candidate")) == []
    )

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
    assert "slower after the change by more than 50%: TTFB p50" in site["error"]
    assert site["error"].endswith("; the previous configs are put back")

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
    assert verdict["summary"].startswith("rolled back, worse by more than 50%")


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


def test_the_operators_own_settings_survive_a_tuning_and_stay_active(
    tmp_path: Path, web_server: WebServer
) -> None:
    prepend = add_operator_settings(web_server)
    proj = project(tmp_path / "p", web_server, maintainer_config_backups_kept=1)
    untuned = {"nginx": web_server.nginx_conf.read_text(), "pool": web_server.pool_file.read_text()}

    preview = cli(proj, "run", "perf-tune", "--dry-run", "--output", "json", *LOAD)
    assert preview.returncode == 0, preview.stderr
    tune = {s["id"]: s for s in json.loads(preview.stdout)["sites"]["wp"]["steps"]}["tune"]["preview"]
    assert removed_lines(tune["diff"]) == UNTUNED_LINES  # the diff shows the real change only

    args = ("run", "perf-tune", "--output", "json", *LOAD, "-p", "threshold=300")
    for children in (6, 7):  # two runs that change something
        result = cli(proj, *args, "-p", f"max_children={children}")
        assert result.returncode == 0, result.stderr
    nginx, pool = web_server.nginx_conf.read_text(), web_server.pool_file.read_text()
    assert "    client_max_body_size 200m;\n    add_header X-Operator nginx-kept always;\n" in nginx
    assert f"; the operator's own\nphp_admin_value[auto_prepend_file] = {prepend}\n" in pool
    assert "pm.max_children = 7\n" in pool and "worker_connections 4096;" in nginx
    # and the reloaded servers run them: both headers come from the operator's lines
    sent = headers(web_server)
    assert sent["x-operator"] == "nginx-kept" and sent["x-operator-pool"] == "pool-kept"

    # backups: only the newest run's folder is kept (maintainer_config_backups_kept=1), with what it replaced
    (last,) = (proj / "config-backups").iterdir()
    assert last.name == read_log(proj)[-1]["run_id"]
    kept_pool = (last / str(web_server.pool_file).lstrip("/")).read_text()
    assert "pm.max_children = 6\n" in kept_pool and prepend.name in kept_pool
    assert untuned["pool"].splitlines()[0] in kept_pool


def test_a_mariadb_only_change_is_pending_restart_and_not_measured(
    tmp_path: Path, web_server: WebServer
) -> None:
    proj = project(tmp_path / "p", web_server)
    untuned = configs(web_server)
    result = cli(proj, "run", "perf-tune", "--output", "json", *LOAD, "-p", "components=[mariadb]")
    assert result.returncode == 0, result.stderr
    entry = read_log(proj)[-1]
    steps = steps_of(entry)
    # nothing the site serves with changed: no reload, no second measurement, no verdict, no restart
    assert (
        steps["tune"] == "ok" and steps["mariadb_pending"] == "ok" and steps["restart_mariadb"] == "skipped"
    )
    assert {steps[s] for s in ("reload_nginx", "reload_php_fpm", "check", "after", "compare")} == {"skipped"}
    changes = entry["sites"]["wp"]["changes"]
    assert [c["kind"] for c in changes] == ["measurement", "file"]
    (cnf,) = [c for c in changes if c["kind"] == "file"]
    assert cnf["component"] == "mariadb" and cnf["pending_restart"] is True and cnf["applies"] == "restart"
    assert "not active and not measured yet" in cnf["summary"]
    tuned = configs(web_server)
    assert tuned["mariadb"] != untuned["mariadb"] and {
        k: tuned[k] for k in ("nginx", "php_fpm", "opcache")
    } == {k: untuned[k] for k in ("nginx", "php_fpm", "opcache")}
    summary = json.loads(result.stdout)["sites"]["wp"]
    assert "pending restart" in json.dumps(summary)


def test_the_tuning_merged_into_debians_own_configs_passes_nginx_t_and_php_fpm_t(tmp_path: Path) -> None:
    """Debian's shipped nginx.conf and www.conf (as a fresh server has them), merged, then checked by the servers."""
    nginx_conf, pools = Path("/etc/nginx/nginx.conf"), sorted(Path("/etc/php").glob("*/fpm/pool.d/www.conf"))
    php_fpm = php_fpm_binary()
    if not nginx_conf.exists() or not pools or php_fpm is None:
        pytest.skip("nginx and php-fpm are installed by .ci/run")
    knobs = tuning.compute(FACTS, tuning.Policy())
    context = {
        "site": {},
        "tune": {name: knob.value for name, knob in knobs.items()},
        "why": {name: knob.reason for name, knob in knobs.items()},
    }
    templates = REPO / "templates"
    for src, current, merged_with, check in (
        ("perf/nginx-tuning.conf.j2", nginx_conf, merge.merge_nginx, ["/usr/sbin/nginx", "-t", "-q", "-c"]),
        ("perf/php-fpm-pool-tuning.conf.j2", pools[-1], merge.merge_ini, [php_fpm, "-t", "-y"]),
    ):
        fragment = templating.file_template(templates, src).render(**context)
        original = current.read_text()
        merged = merged_with(original, fragment)
        candidate = tmp_path / current.name
        candidate.write_text(merged)
        result = subprocess.run([*check, str(candidate)], capture_output=True, text=True)
        assert result.returncode == 0, f"{src}: {result.stderr}"
        # the lines of the shipped file it removed are managed settings only, everything else is kept
        managed = {
            line.split()[0]
            for line in fragment.splitlines()
            if line.strip() and line.strip()[0] not in "#;[}" and not line.startswith(" " * 8)
        }
        diff = difflib.unified_diff(original.splitlines(), merged.splitlines(), lineterm="")
        removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
        assert removed and all(line.split()[0] in managed for line in removed), (managed, removed)
