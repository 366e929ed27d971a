"""Performance tuning without servers: facts parsing, tuned values and reasons, the load, the verdict,
and perf_configs' all-or-nothing install over the real local transport."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from maintainer.actions.perf_compare import PerfCompareAction, PerfCompareArgs
from maintainer.actions.perf_configs import PerfConfigsAction, PerfConfigsArgs
from maintainer.actions.perf_facts import STATE_KEY
from maintainer.errors import BadInput, StepFailed
from maintainer.inventory import Site
from maintainer.perf import bench, facts, tuning
from maintainer.testing import action_context

OUTPUT = """cpus=4
mem_total_kb=8156000
mem_available_kb=5000000
php_fpm_bin=/usr/sbin/php-fpm8.2
php_version=PHP 8.2.36 (fpm-fcgi) (built: Nov 18 2026 20:02:04)
php_workers=5
php_workers_rss_kb=256000
nginx_version=nginx version: nginx/1.22.1
mariadb_version=/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)
mariadb_data_kb=1048576
php_files=2500
php_code_bytes=41943040
"""
FACTS = facts.from_output(OUTPUT, {"php_fpm_pool": "www", "docroot": "/var/www/shop"})


def test_facts_are_parsed_from_the_scripts_output() -> None:
    assert FACTS.cpus == 4 and FACTS.mem_total_mb == 7964 and FACTS.mem_available_mb == 4882
    assert (FACTS.php_version, FACTS.php_branch, FACTS.php_fpm_service) == ("8.2.36", "8.2", "php8.2-fpm")
    assert FACTS.php_workers == 5 and FACTS.php_worker_avg_mb == 50.0 and FACTS.php_pool == "www"
    assert FACTS.nginx_version == "1.22.1" and FACTS.mariadb_version == "10.11.19"
    assert FACTS.mariadb_data_mb == 1024 and FACTS.php_files == 2500 and FACTS.php_code_mb == 40.0
    assert "PHP-FPM 8.2.36 (pool www: 5 workers of 50 MB average)" in FACTS.summary()
    bare = facts.from_output("cpus=1\nmem_total_kb=1048576\nphp_workers=0\n", {})
    assert bare.php_version is None and bare.mariadb_version is None and bare.php_worker_avg_mb is None
    with pytest.raises(StepFailed, match="CPU count and memory"):
        facts.from_output("php_workers=0\n", {})


def test_the_facts_script_runs_here() -> None:
    from maintainer.transport import LocalTransport

    result = LocalTransport().run(facts.command({"docroot": str(Path(__file__).parent)}))
    assert result.ok, result.stderr
    found = facts.from_output(result.stdout, {})
    assert found.cpus >= 1 and found.mem_total_mb > 0


def test_max_children_is_the_smaller_of_the_memory_and_the_cpu_bound() -> None:
    knobs = tuning.compute(FACTS, tuning.Policy())
    # 40% of 7964 MB = 3185 MB / 52 MB (50 rounded up to 4 MB) = 61; 8 x 4 CPUs = 32
    assert knobs["pm_max_children"].value == 32
    reason = knobs["pm_max_children"].reason
    assert "40% of 7964 MB RAM (MariaDB shares this host) = 3185 MB" in reason
    assert "52 MB per worker (average RSS of 5 running" in reason and "= 61" in reason and "= 32" in reason
    small = tuning.compute(replace(FACTS, mem_total_mb=1024), tuning.Policy())
    assert small.get("pm_max_children").value == 409 // 52 == 7  # type: ignore[union-attr]
    no_db = tuning.compute(replace(FACTS, mem_total_mb=1024, mariadb_version=None), tuning.Policy())
    assert no_db["pm_max_children"].value == 614 // 52  # 60% without a local MariaDB
    idle = tuning.compute(replace(FACTS, php_workers=0, php_worker_avg_mb=None), tuning.Policy(worker_mb=100))
    assert idle["pm_max_children"].value == 31 and "assumed" in idle["pm_max_children"].reason


def test_other_values_follow_from_the_facts() -> None:
    knobs = tuning.compute(FACTS, tuning.Policy())
    values = {k: v.value for k, v in knobs.items()}
    assert values["pm_start_servers"] == 8 and values["pm_min_spare_servers"] == 4
    assert values["pm_max_spare_servers"] == 16
    assert values["opcache_memory_mb"] == 160  # 3 x 40 + 32 = 152, rounded up to 32
    assert values["opcache_max_files"] == 10000
    assert tuning.compute(replace(FACTS, php_files=9100), tuning.Policy())["opcache_max_files"].value == 19000
    assert values["nginx_worker_processes"] == 4
    assert values["innodb_buffer_pool_mb"] == 1280  # 1024 x 1.25, a multiple of 128
    assert "at most 25% of 7964 MB RAM = 1991 MB" in knobs["innodb_buffer_pool_mb"].reason
    assert (
        tuning.compute(replace(FACTS, mariadb_data_mb=10_000), tuning.Policy())["innodb_buffer_pool_mb"].value
        == 1991
    )
    assert values["innodb_log_file_mb"] == 320 and values["mariadb_max_connections"] == 151


@pytest.mark.parametrize("cpus", [1, 2, 3, 8, 64])
@pytest.mark.parametrize("ram", [256, 1024, 7964, 262144])
@pytest.mark.parametrize("worker", [None, 9.5, 50.0, 700.0])
def test_the_pool_settings_are_always_ones_php_fpm_accepts(cpus: int, ram: int, worker: float | None) -> None:
    found = replace(
        FACTS, cpus=cpus, mem_total_mb=ram, php_workers=3 if worker else 0, php_worker_avg_mb=worker
    )
    v = {k: knob.value for k, knob in tuning.compute(found, tuning.Policy()).items()}
    # php-fpm: min_spare <= start <= max_spare <= max_children
    assert (
        1
        <= v["pm_min_spare_servers"]
        <= v["pm_start_servers"]
        <= v["pm_max_spare_servers"]
        <= v["pm_max_children"]
    )
    assert v["innodb_buffer_pool_mb"] >= 128 and 48 <= v["innodb_log_file_mb"] <= 2048
    assert v["mariadb_max_connections"] >= v["pm_max_children"]


def test_pins_replace_computed_values_and_the_runbook_wins_over_the_inventory() -> None:
    pins = tuning.pins_of({"pm_max_children": 20, "nginx_keepalive_timeout": 5}, {"pm_max_children": "12"})
    knobs = tuning.compute(FACTS, tuning.Policy(), pins)
    assert (
        knobs["pm_max_children"].value == "12" and knobs["pm_max_children"].pinned_by == "runbook overrides"
    )
    assert "computed: 32" in knobs["pm_max_children"].reason
    assert knobs["pm_max_spare_servers"].value == 12  # derived from the pinned value
    assert knobs["nginx_keepalive_timeout"].value == 5
    assert tuning.pins_of({"pm_max_children": "auto"}, {"pm_max_children": None}) == {}
    assert tuning.unknown({"pm_max_childs": 1, "pm": "static"}) == ["pm_max_childs"]
    # a pin that is no number still renders (the server's check refuses it); derived values stay sane
    odd = tuning.compute(FACTS, tuning.Policy(), {"pm_max_children": ("lots", "test")})
    assert odd["pm_max_children"].value == "lots" and odd["pm_start_servers"].value == 8


# ---------------------------------------------------------------- the load and the verdict


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every keep-alive answer waits for a delayed ACK
    status = 200

    def do_GET(self) -> None:
        body = b"<html>Hello marker</html>" * 20
        gz = "gzip" in self.headers.get("Accept-Encoding", "")
        if gz:
            body = gzip.compress(body)
        self.send_response(self.status if self.path != "/broken" else 500)
        self.send_header("Content-Length", str(len(body)))
        if gz:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_load_measures_ttfb_and_throughput(http_url: str) -> None:
    load = bench.Load(
        url=f"{http_url}/", requests=40, concurrency=4, warmup=4, headers={"Accept-Encoding": "gzip"}
    )
    load.contains = "Hello marker"  # checked in the unzipped body
    figures = bench.run(load)
    assert figures["ok"] == 40 and figures["errors"] == 0
    assert 0 < figures["ttfb_p50_ms"] <= figures["ttfb_p95_ms"] <= figures["ttfb_max_ms"]
    assert figures["rps"] > 0 and figures["bytes"] < 500  # compressed
    broken = bench.run(bench.Load(url=f"{http_url}/broken", requests=5, concurrency=2, warmup=0))
    assert broken["ok"] == 0 and broken["errors"] == 5 and broken["first_error"] == "HTTP 500"
    missing = bench.run(
        bench.Load(url=f"{http_url}/", requests=3, concurrency=1, warmup=0, contains="absent")
    )
    assert missing["errors"] == 3 and "lacks 'absent'" in missing["first_error"]


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert bench.percentile(values, 0.5) == 10 and bench.percentile(values, 0.95) == 19
    assert bench.percentile([], 0.5) == 0.0 and bench.percentile([7.0], 0.95) == 7.0


BEFORE = {"ttfb_p50_ms": 40.0, "ttfb_p95_ms": 80.0, "ttfb_max_ms": 90.0, "rps": 50.0}


def test_the_verdict_allows_the_threshold_and_ignores_tiny_latency_changes() -> None:
    within = {"ttfb_p50_ms": 43.9, "ttfb_p95_ms": 87.9, "ttfb_max_ms": 300.0, "rps": 45.1}
    assert not any(m["worse"] for m in bench.compare(BEFORE, within, threshold_percent=10).values())
    slower = {**within, "rps": 44.9}
    assert bench.compare(BEFORE, slower, threshold_percent=10)["rps"]["worse"]
    fast = {"ttfb_p50_ms": 1.0, "ttfb_p95_ms": 2.0, "ttfb_max_ms": 2.0, "rps": 50.0}
    noisy = {**fast, "ttfb_p50_ms": 2.5}  # +150%, but half a millisecond more
    assert not bench.compare(fast, noisy, threshold_percent=10)["ttfb_p50_ms"]["worse"]


def test_perf_compare_fails_with_the_figures_or_records_the_kept_change(tmp_path: Path) -> None:
    ctx = action_context(tmp_path)
    after = {"ttfb_p50_ms": 130.0, "ttfb_p95_ms": 85.0, "ttfb_max_ms": 99.0, "rps": 20.0}
    with pytest.raises(
        StepFailed, match=r"by more than 10%: TTFB p50 40.0 -> 130.0 ms \(\+225.0%\), req/s 50.0 -> 20.0"
    ) as failed:
        PerfCompareAction().run(ctx, PerfCompareArgs(before=BEFORE, after=after))
    assert failed.value.outputs["verdict"] == "worse" and failed.value.outputs["worse"] == [
        "ttfb_p50_ms",
        "rps",
    ]
    kept = PerfCompareAction().run(ctx, PerfCompareArgs(before=BEFORE, after=after, threshold=300))
    assert kept.outputs["verdict"] == "kept" and kept.changes[0]["kind"] == "perf_verdict"
    assert kept.changes[0]["summary"].startswith(
        "kept, not worse by more than 300%: TTFB p50 40.0 -> 130.0 ms"
    )
    with pytest.raises(StepFailed, match="rps is missing"):
        PerfCompareAction().run(ctx, PerfCompareArgs(before={"ttfb_p50_ms": 1}, after=after, metrics=["rps"]))


# ---------------------------------------------------------------- perf_configs, all or nothing


@pytest.fixture
def configs_project(tmp_path: Path) -> Path:
    templates = tmp_path / "project" / "templates" / "t"
    templates.mkdir(parents=True)
    (templates / "a.j2").write_text("# {{ why.pm_max_children }}\nchildren = {{ tune.pm_max_children }}\n")
    (templates / "b.j2").write_text(
        "; {{ facts.cpus }} CPUs\nkeepalive = {{ tune.nginx_keepalive_timeout }}\n"
    )
    return tmp_path / "project"


def _args(root: Path, validate_b: str = "grep -q keepalive %s", **extra: Any) -> PerfConfigsArgs:
    return PerfConfigsArgs.model_validate(
        {
            "files": {
                "php_fpm": {"src": "t/a.j2", "dest": str(root / "a.conf"), "validate": "grep -q children %s"},
                "nginx": {"src": "t/b.j2", "dest": str(root / "b.conf"), "validate": validate_b},
            },
            "backup_dir": str(root.parent / "config-backups"),  # not this machine's ~/.maintainer
            **extra,
        }
    )


def test_perf_configs_installs_all_or_nothing_and_undo_restores(
    configs_project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "etc"
    out.mkdir()
    (out / "a.conf").write_text("children = 5\n")
    ctx = action_context(configs_project)
    ctx.state[STATE_KEY] = FACTS  # as if a perf_facts step had read them
    action = PerfConfigsAction()

    preview = action.dry_run(ctx, _args(out))
    assert preview["changed_components"] == ["php_fpm", "nginx"]
    assert "-children = 5\n+# the smaller of 40%" in preview["diff"] and "+children = 32\n" in preview["diff"]
    assert (out / "a.conf").read_text() == "children = 5\n" and not (out / "b.conf").exists()

    with pytest.raises(
        StepFailed, match=r"nginx: validation of .*b.conf failed \(rc 1\), nothing was installed"
    ):
        action.run(ctx, _args(out, validate_b="false %s"))
    assert (out / "a.conf").read_text() == "children = 5\n" and not (out / "b.conf").exists()
    assert list(out.iterdir()) == [out / "a.conf"]  # no candidate left behind

    result = action.run(ctx, _args(out, overrides={"nginx_keepalive_timeout": 7}))
    assert result.changed and result.outputs["changed_components"] == ["php_fpm", "nginx"]
    assert (out / "b.conf").read_text() == "; 4 CPUs\nkeepalive = 7\n"
    assert [c["component"] for c in result.changes] == ["php_fpm", "nginx"]
    assert result.changes[0]["backup"] and "+children = 32" in result.changes[0]["diff"]
    assert (
        result.outputs["tuning"]["pm_max_children"] == 32
        and "per CPU" in result.outputs["reasons"]["pm_max_children"]
    )

    assert action.undo(ctx, _args(out), result)
    assert (out / "a.conf").read_text() == "children = 5\n" and not (out / "b.conf").exists()


def test_perf_configs_leaves_a_file_whose_only_change_is_a_comment(
    configs_project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "etc"
    out.mkdir()
    (out / "a.conf").write_text("# the reason of last time\nchildren = 32\n")
    ctx = action_context(configs_project)
    ctx.state[STATE_KEY] = FACTS
    result = PerfConfigsAction().run(ctx, _args(out, components=["php_fpm"]))
    assert not result.changed and result.outputs["changed_components"] == [] and result.changes == []
    assert (out / "a.conf").read_text() == "# the reason of last time\nchildren = 32\n"


def test_perf_configs_skips_a_server_that_is_not_installed(configs_project: Path, tmp_path: Path) -> None:
    ctx = action_context(configs_project)
    ctx.state[STATE_KEY] = replace(FACTS, nginx_version=None)
    preview = PerfConfigsAction().dry_run(ctx, _args(tmp_path))
    assert preview["skipped"] == {"nginx": "nginx is not installed on this host"}
    assert preview["changed_components"] == ["php_fpm"]


def test_perf_configs_checks_names_before_anything_runs(tmp_path: Path) -> None:
    action = PerfConfigsAction()
    site = Site("shop", {"perf_tuning": {"innodb_bufer_pool_mb": 512}}, [])
    with pytest.raises(BadInput, match=r"innodb_bufer_pool_mb \(did you mean innodb_buffer_pool_mb\?\)"):
        action.check_site(site, _args(tmp_path), tmp_path)
    with pytest.raises(BadInput, match="components mariadb have no entry"):
        action.check_site(Site("shop", {}, []), _args(tmp_path, components=["mariadb"]), tmp_path)
    with pytest.raises(BadInput, match="overrides names no tunable value: workers"):
        action.check_site(Site("shop", {}, []), _args(tmp_path, overrides={"workers": 3}), tmp_path)


# ---------------------------------------------------------------- review fixes


@pytest.mark.parametrize("value", ["abc", -5, "-5", 0, "0", 2.5, "12 workers"])
def test_pins_of_the_wrong_type_or_range_are_bad_input_at_plan_time(tmp_path: Path, value: Any) -> None:
    action = PerfConfigsAction()
    with pytest.raises(
        BadInput, match=r"perf_tuning: pm_max_children=.* \((must be a whole number|must be at least 1)\)"
    ):
        action.check_site(
            Site("shop", {"perf_tuning": {"pm_max_children": value}}, []), _args(tmp_path), tmp_path
        )
    with pytest.raises(BadInput, match=r"overrides: pm_max_children="):
        action.check_site(
            Site("shop", {}, []), _args(tmp_path, overrides={"pm_max_children": value}), tmp_path
        )


def test_pins_in_range_pass_and_other_values_are_typed_too(tmp_path: Path) -> None:
    action = PerfConfigsAction()
    good = {
        "pm_max_children": "12",
        "innodb_buffer_pool_mb": 512,
        "pm": "static",
        "nginx_static_expires": "7d",
    }
    action.check_site(
        Site("shop", {"perf_tuning": good}, []),
        _args(tmp_path, overrides={"pm_max_children": "auto"}),
        tmp_path,
    )
    for name, value, why in (
        ("innodb_buffer_pool_mb", 4, "at least 8"),
        ("pm", "fast", "one of dynamic, static, ondemand"),
        ("nginx_gzip_comp_level", 12, "at most 9"),
        ("nginx_static_expires", "soon", "must match"),
    ):
        with pytest.raises(BadInput, match=why):
            action.check_site(Site("shop", {"perf_tuning": {name: value}}, []), _args(tmp_path), tmp_path)


def test_a_pinned_buffer_pool_bigger_than_ram_fails_before_anything_is_installed(
    configs_project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "etc"
    out.mkdir()
    ctx = action_context(configs_project, site_vars={"perf_tuning": {"innodb_buffer_pool_mb": 100_000}})
    ctx.state[STATE_KEY] = FACTS  # 7964 MB RAM
    action = PerfConfigsAction()
    action.check_site(ctx.site, _args(out), configs_project)  # needs the facts: not a plan-time error
    for attempt in (action.dry_run, action.run):
        with pytest.raises(
            StepFailed, match=r"innodb_buffer_pool_mb=100000 .* more than the host's 7964 MB RAM"
        ):
            attempt(ctx, _args(out))
    assert list(out.iterdir()) == []


def test_the_dry_run_validates_the_rendered_configs_in_a_private_temp_dir(
    configs_project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "etc"
    out.mkdir()
    (out / "b.conf").write_text("keepalive = 3\n")
    ctx = action_context(configs_project)
    ctx.state[STATE_KEY] = FACTS
    seen = tmp_path / "seen"
    check = f"cp %s {seen} && grep -q bogus %s"
    temp_before = set(Path("/tmp").glob("maintainer-perf.*"))
    preview = PerfConfigsAction().dry_run(ctx, _args(out, validate_b=check))
    assert preview["summary"].startswith("would be rejected by validation: nginx (rc 1)")
    assert list(preview["rejected"]) == ["nginx"]
    assert seen.read_text() == "; 4 CPUs\nkeepalive = 15\n"  # the rendered file was validated
    assert (
        sorted(p.name for p in out.iterdir()) == ["b.conf"]
        and (out / "b.conf").read_text() == "keepalive = 3\n"
    )
    assert set(Path("/tmp").glob("maintainer-perf.*")) == temp_before  # its temp dir is gone
    ok = PerfConfigsAction().dry_run(ctx, _args(out))
    assert ok["rejected"] == {} and ok["summary"].startswith("would change php_fpm, nginx")


def test_a_rolled_back_verdict_is_recorded_as_a_change(tmp_path: Path) -> None:
    ctx = action_context(tmp_path)
    after = {"ttfb_p50_ms": 130.0, "ttfb_p95_ms": 85.0, "ttfb_max_ms": 99.0, "rps": 20.0}
    with pytest.raises(StepFailed) as failed:
        PerfCompareAction().run(ctx, PerfCompareArgs(before=BEFORE, after=after))
    (change,) = failed.value.changes
    assert change["kind"] == "perf_verdict" and change["verdict"] == "worse"
    assert change["worse"] == ["ttfb_p50_ms", "rps"]
    assert change["before"]["rps"] == BEFORE["rps"] and change["after"]["rps"] == 20.0
    assert change["summary"].startswith("rolled back, worse by more than 10%: TTFB p50 40.0 -> 130.0 ms")


def test_a_component_asked_for_by_name_that_is_not_installed_fails(
    configs_project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "etc"
    out.mkdir()
    ctx = action_context(configs_project)
    ctx.state[STATE_KEY] = replace(FACTS, nginx_version=None)
    for attempt in (PerfConfigsAction().dry_run, PerfConfigsAction().run):
        with pytest.raises(StepFailed, match="cannot tune the requested nginx: nginx is not installed"):
            attempt(ctx, _args(out, components=["php_fpm", "nginx"]))
    assert list(out.iterdir()) == []
    assert PerfConfigsAction().run(ctx, _args(out)).outputs["skipped"] == {
        "nginx": "nginx is not installed on this host"
    }  # the default list still skips it quietly


def test_the_facts_measure_only_the_www_pool_by_default(tmp_path: Path) -> None:
    import os

    from maintainer.transport import LocalTransport

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ps").write_text(
        "#!/bin/sh\necho '102400 php-fpm: pool www'\necho '102400 php-fpm: pool www'\n"
        "echo '409600 php-fpm: pool admin'\necho '1000 php-fpm: master process (/etc/php.conf)'\n"
    )
    (fake / "ps").chmod(0o755)

    def measure(site_vars: dict[str, Any]) -> facts.Facts:
        argv = ["env", f"PATH={fake}:{os.environ['PATH']}", *facts.command(site_vars)]
        result = LocalTransport().run(argv)
        assert result.ok, result.stderr
        return facts.from_output(result.stdout, site_vars)

    www = measure({})
    assert (www.php_pool, www.php_workers, www.php_worker_avg_mb) == ("www", 2, 100.0)
    admin = measure({"php_fpm_pool": "admin"})
    assert (admin.php_pool, admin.php_workers) == ("admin", 1)
    every = measure({"php_fpm_pool": "*"})
    assert (every.php_pool, every.php_workers) == (None, 3)


def test_an_interrupted_measurement_is_cancelled_not_failed(tmp_path: Path, http_url: str) -> None:
    from maintainer.actions.http_bench import HttpBenchAction, HttpBenchArgs
    from maintainer.errors import StepCancelled

    ctx = action_context(tmp_path)
    ctx.cancel.set()
    with pytest.raises(StepCancelled, match="interrupted during the measurement"):
        HttpBenchAction().run(ctx, HttpBenchArgs(url=http_url, requests=5, warmup=0))


# ---------------------------------------------------------------- perf_configs: backups, restarts, merging


def test_previous_files_are_kept_in_one_folder_per_run_and_only_the_last_runs_are_kept(
    configs_project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "etc"
    out.mkdir()
    backups = tmp_path / "config-backups"
    ctx = action_context(configs_project)
    ctx.state[STATE_KEY] = FACTS
    action = PerfConfigsAction()
    folders = []
    for n, keepalive in enumerate((7, 8, 9, 10)):
        (out / "a.conf").write_text(f"children = {n}\n")
        ctx.run.id = f"2026112{n}T010000Z-abc12{n}"
        result = action.run(ctx, _args(out, keep_backups=2, overrides={"nginx_keepalive_timeout": keepalive}))
        folder = backups / ctx.run.id
        folders.append(folder)
        assert result.outputs["backup_folder"] == str(folder)
        # the file as it was, at its absolute path under the run's folder, readable by its owner only
        copy = folder / str(out / "a.conf").lstrip("/")
        assert copy.read_text() == f"children = {n}\n" and copy.stat().st_mode & 0o777 == 0o600
        assert result.changes[0]["backup"] == str(copy)
        assert (folder.stat().st_mode & 0o777) == 0o700 and (backups.stat().st_mode & 0o777) == 0o700
    # no .bak beside the configs; in the backup folder, the newest two runs only
    assert sorted(p.name for p in out.iterdir()) == ["a.conf", "b.conf"]
    assert sorted(backups.iterdir()) == folders[-2:]
    assert result.outputs["backups_pruned"] == [folders[1].name]
    # what is no run folder of maintainer's is never pruned
    (backups / "notes").mkdir()
    ctx.run.id = "20261130T010000Z-abc130"
    (out / "a.conf").write_text("children = 99\n")
    action.run(ctx, _args(out, keep_backups=1))
    assert sorted(p.name for p in backups.iterdir()) == ["20261130T010000Z-abc130", "notes"]


def test_a_restart_only_file_is_pending_restart_unless_the_run_restarts_the_server(
    configs_project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "etc"
    out.mkdir()
    ctx = action_context(configs_project)
    ctx.state[STATE_KEY] = FACTS

    def args(**extra: Any) -> PerfConfigsArgs:
        spec = {"src": "t/a.j2", "dest": str(out / "db.cnf"), "applies": "restart"}
        return _args(
            out, files={"mariadb": spec, "nginx": {"src": "t/b.j2", "dest": str(out / "b.conf")}}, **extra
        )

    preview = PerfConfigsAction().dry_run(ctx, args())
    assert preview["applied_components"] == ["nginx"] and preview["pending_restart"] == ["mariadb"]
    assert "would change mariadb, pending restart: MariaDB reads it when it starts" in preview["summary"]
    result = PerfConfigsAction().run(ctx, args())
    assert result.outputs["applied_components"] == ["nginx"] and result.outputs["pending_restart"] == [
        "mariadb"
    ]
    db = next(c for c in result.changes if c["component"] == "mariadb")
    assert db["pending_restart"] is True and db["applies"] == "restart"
    assert "not active and not measured yet" in db["summary"]
    (out / "db.cnf").unlink()
    (out / "b.conf").unlink()
    restarted = PerfConfigsAction().run(ctx, args(restarted=["mariadb"]))
    assert restarted.outputs["applied_components"] == ["mariadb", "nginx"]
    assert restarted.outputs["pending_restart"] == []
    assert not any(c.get("pending_restart") for c in restarted.changes)


def test_a_merged_file_keeps_the_operators_lines_and_must_exist(
    configs_project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "etc"
    out.mkdir()
    (configs_project / "templates" / "t" / "pool.j2").write_text(
        "[www]\n; maintainer: {{ why.pm_max_children }}\npm.max_children = {{ tune.pm_max_children }}\n"
    )
    ctx = action_context(configs_project)
    ctx.state[STATE_KEY] = FACTS

    def args() -> PerfConfigsArgs:
        spec = {"src": "t/pool.j2", "dest": str(out / "www.conf"), "merge": "ini"}
        return _args(out, files={"php_fpm": spec})

    with pytest.raises(StepFailed, match=r"www.conf does not exist; perf-tune writes its settings into"):
        PerfConfigsAction().dry_run(ctx, args())
    pool = "[www]\nlisten = /run/php.sock\npm.max_children = 5\nphp_admin_value[memory_limit] = 1G\n"
    (out / "www.conf").write_text(pool)
    preview = PerfConfigsAction().dry_run(ctx, args())
    reason = preview["tuning"]["pm_max_children"]["reason"]
    diff_lines = [line for line in preview["diff"].splitlines()[2:] if line[:1] in "+-"]
    assert diff_lines == ["-pm.max_children = 5", f"+; maintainer: {reason}", "+pm.max_children = 32"]
    PerfConfigsAction().run(ctx, args())
    assert (out / "www.conf").read_text() == pool.replace(
        "pm.max_children = 5", f"; maintainer: {reason}\npm.max_children = 32"
    )
