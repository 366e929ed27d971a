"""The engine end to end on local sites (ansible_connection: local): real processes, real files."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from maintainer import RunOptions, run
from maintainer.engine import NullReporter, SiteResult
from maintainer.errors import BadInput, ExitCode
from tests.helpers import local_site, make_project, read_log

ROLLBACK_RUNBOOK = """
name: deploy
version: 1.0.0
params:
  fail_at: {type: string, default: none}
  token: {type: secret, default: hunter2-secret}
steps:
  - id: conf
    uses: template
    with:
      src: app.conf.j2
      dest: "{{ site.docroot }}/app.conf"
  - id: marker
    uses: shell
    with:
      command: "echo changed > {{ (site.docroot ~ '/marker') | quote }}; echo token={{ params.token }}"
  - id: boom
    uses: shell
    when: params.fail_at == 'boom'
    with:
      command: "echo about to fail >&2; exit 7"
  - id: after
    uses: shell
    with:
      command: "echo {{ steps.marker.outputs.stdout | trim | quote }} > {{ (site.docroot ~ '/after') | quote }}"
rollback:
  - id: undo_marker
    uses: shell
    with:
      command: "rm -f {{ (site.docroot ~ '/marker') | quote }}; echo rolled back because {{ steps.boom.status }}"
finally:
  - id: always
    uses: shell
    with:
      command: "touch {{ (site.docroot ~ '/finally-ran') | quote }}"
"""


def _project(tmp_path: Path, runbook: str = ROLLBACK_RUNBOOK, sites: int = 1, **extra: object) -> Path:
    site_vars = {}
    for i in range(sites):
        docroot = tmp_path / f"site{i}"
        docroot.mkdir()
        (docroot / "app.conf").write_text("old config\n")
        site_vars[f"site{i}"] = local_site(tmp_path, docroot=str(docroot), **extra)
    project = make_project(tmp_path, {"deploy@1.0.0": runbook}, site_vars)
    (project / "templates" / "app.conf.j2").write_text("site={{ site.name }} run={{ run.id }}\n")
    return project


def _run(project: Path, **kwargs: object) -> object:
    return run(RunOptions(runbook="deploy", project=project, **kwargs))  # type: ignore[arg-type]


def test_success_records_one_entry_with_changes(tmp_path: Path) -> None:
    project = _project(tmp_path)
    result = _run(project, ticket="OPS-1")
    assert result.exit_code == ExitCode.OK, result.sites
    docroot = tmp_path / "site0"
    assert (docroot / "app.conf").read_text().startswith("site=site0 run=")
    assert (docroot / "marker").read_text().strip() == "changed"
    # later steps see the real outputs; only what is shown or recorded is masked
    assert (docroot / "after").read_text().strip() == "token=hunter2-secret"
    assert (docroot / "finally-ran").exists()
    (entry,) = read_log(project)
    assert entry["ticket"] == "OPS-1" and entry["status"] == "ok" and entry["seq"] == 1
    site = entry["sites"]["site0"]
    assert [s["id"] for s in site["steps"]] == ["conf", "marker", "boom", "after", "always"]
    assert site["steps"][2]["status"] == "skipped"
    (change,) = site["changes"]
    assert change["kind"] == "file" and change["before_sha256"] != change["after_sha256"]
    assert Path(change["backup"]).read_text() == "old config\n"


def test_failed_step_rolls_back_and_runs_finally(tmp_path: Path) -> None:
    project = _project(tmp_path)
    result = _run(project, params={"fail_at": "boom"})
    assert result.exit_code == ExitCode.SITE_FAILED
    site: SiteResult = result.sites["site0"]
    assert site.status == "failed" and site.rollback == "ok"
    assert "step 'boom' failed: exited with 7: about to fail" in (site.error or "")
    docroot = tmp_path / "site0"
    assert (docroot / "app.conf").read_text() == "old config\n", "the template step was undone"
    assert not (docroot / "marker").exists(), "the rollback step ran"
    assert not (docroot / "after").exists(), "no step ran after the failure"
    assert (docroot / "finally-ran").exists()
    sections = [(s.section, s.id, s.status) for s in site.steps]
    assert ("undo", "conf", "ok") in sections and ("rollback", "undo_marker", "ok") in sections
    (entry,) = read_log(project)
    assert entry["sites"]["site0"]["rollback"] == "ok"


def test_secrets_never_reach_the_change_log_or_outputs(tmp_path: Path) -> None:
    project = _project(tmp_path)
    result = _run(project, params={"token": "s3cret-value-42"})
    assert result.exit_code == ExitCode.OK
    text = (project / "changelog.jsonl").read_text()
    assert "s3cret-value-42" not in text
    assert "s3cret-value-42" not in json.dumps(result.record())
    marker = next(s for s in result.sites["site0"].steps if s.id == "marker")
    assert marker.outputs["stdout"].strip() == "token=********"


def test_dry_run_changes_nothing_and_records_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path)
    result = _run(project, dry_run=True, params={"token": "dry-secret-99"})
    assert result.status == "planned"
    plan = result.plan.record()
    conf = plan["sites"]["site0"]["steps"][0]
    assert "-old config" in conf["preview"]["diff"] and "+site=site0" in conf["preview"]["diff"]
    assert plan["sites"]["site0"]["steps"][3].get("rendered_at_run_time") is True
    assert "dry-secret-99" not in json.dumps(plan)
    assert (tmp_path / "site0" / "app.conf").read_text() == "old config\n"
    assert read_log(project) == []


def test_continue_on_error_and_retries(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    project = _project(
        tmp_path,
        f"""
        name: deploy
        version: 1.0.0
        steps:
          - id: flaky
            uses: shell
            retries: 3
            retry_delay: 0
            with:
              command: "n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 2 ]"
          - id: soft
            uses: shell
            continue_on_error: true
            with: {{command: "exit 3"}}
          - id: last
            uses: debug
            with: {{msg: "flaky took {{{{ steps.flaky.status }}}}"}}
        """,
    )
    result = _run(project)
    assert result.exit_code == ExitCode.OK
    steps = {s.id: s for s in result.sites["site0"].steps}
    assert steps["flaky"].attempts == 3 and steps["flaky"].status == "ok"
    assert steps["soft"].status == "failed"
    assert steps["last"].outputs["msg"] == "flaky took ok"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    project = _project(
        tmp_path,
        f"""
        name: deploy
        version: 1.0.0
        steps:
          - id: hang
            uses: shell
            timeout: 1
            with:
              command: "sleep 300 & echo $! > {pidfile}; wait"
        """,
    )
    started = time.monotonic()
    result = _run(project)
    assert time.monotonic() - started < 10
    site = result.sites["site0"]
    assert site.status == "failed" and site.steps[0].status == "timeout"
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_serial_batches_and_max_fail(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        """
        name: deploy
        version: 1.0.0
        serial: 2
        max_fail: 0
        steps:
          - id: s
            uses: shell
            with:
              command: "{{ 'exit 1' if site.name in ('site1',) else 'true' }}"
        """,
        sites=6,
    )
    result = _run(project)
    assert result.plan.record()["batches"] == [["site0", "site1"], ["site2", "site3"], ["site4", "site5"]]
    statuses = {n: r.status for n, r in result.sites.items()}
    assert statuses == {
        "site0": "ok",
        "site1": "failed",
        "site2": "skipped",
        "site3": "skipped",
        "site4": "skipped",
        "site5": "skipped",
    }
    assert "max_fail" in (result.sites["site2"].error or "")
    assert result.exit_code == ExitCode.SITE_FAILED


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    project = _project(
        tmp_path,
        f"""
        name: deploy
        version: 1.0.0
        concurrency: 3
        steps:
          - id: s
            uses: shell
            with:
              command: "date +%s.%N > {marks}/{{{{ site.name }}}}.start; sleep 0.3; date +%s.%N > {marks}/{{{{ site.name }}}}.end"
        """,
        sites=7,
    )
    result = _run(project)
    assert result.exit_code == ExitCode.OK
    spans = [
        (float((marks / f"site{i}.start").read_text()), float((marks / f"site{i}.end").read_text()))
        for i in range(7)
    ]
    peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert 2 <= peak <= 3


def test_lock_held_by_another_run_exits_3_and_wait_lock(tmp_path: Path) -> None:
    project = _project(tmp_path)
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    holder = {"holder": "alice@other-controller", "run_id": "r-other", "since": "earlier"}
    (lock_dir / "site0.lock").write_text(json.dumps(holder))
    result = _run(project)
    assert result.exit_code == ExitCode.CANNOT_START
    assert "alice@other-controller" in (result.sites["site0"].error or "")
    assert not (tmp_path / "site0" / "finally-ran").exists(), "nothing ran on a locked site"
    # refused before starting: not recorded, but the document still says who holds the lock
    assert read_log(project) == []
    document = result.record()
    assert document["recorded"] is False and document["status"] == "refused"
    assert document["sites"]["site0"]["status"] == "locked"
    assert "alice@other-controller" in document["sites"]["site0"]["error"]

    threading.Timer(1.0, (lock_dir / "site0.lock").unlink).start()
    result = _run(project, wait_lock=10)
    assert result.exit_code == ExitCode.OK
    assert not (lock_dir / "site0.lock").exists(), "released after the run"


def test_stale_lock_is_broken_and_logged(tmp_path: Path) -> None:
    project = _project(tmp_path)
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    lock = lock_dir / "site0.lock"
    lock.write_text(json.dumps({"holder": "bob@gone", "run_id": "r-dead"}))
    old = time.time() - 3600
    os.utime(lock, (old, old))
    result = _run(project)
    assert result.exit_code == ExitCode.OK
    assert result.sites["site0"].lock_broken == {"holder": "bob@gone", "run_id": "r-dead"}
    assert read_log(project)[-1]["sites"]["site0"]["lock_broken"]["holder"] == "bob@gone"


def test_interrupt_rolls_back_in_flight_sites_and_records(tmp_path: Path) -> None:
    started = tmp_path / "started"
    project = _project(
        tmp_path,
        f"""
        name: deploy
        version: 1.0.0
        concurrency: 1
        steps:
          - id: slow
            uses: shell
            with:
              command: "touch {started}; sleep 1"
          - id: next
            uses: shell
            with: {{command: "touch {{{{ site.docroot }}}}/next-ran"}}
        rollback:
          - id: rb
            uses: shell
            with: {{command: "touch {{{{ site.docroot }}}}/rolled-back"}}
        """,
        sites=2,
    )
    cancel = threading.Event()

    def interrupt() -> None:
        while not started.exists():
            time.sleep(0.02)
        cancel.set()

    threading.Thread(target=interrupt, daemon=True).start()
    result = run(RunOptions(runbook="deploy", project=project), reporter=NullReporter(), cancel=cancel)
    assert result.exit_code == ExitCode.INTERRUPTED
    assert result.sites["site0"].status == "interrupted"
    assert (tmp_path / "site0" / "rolled-back").exists()
    assert not (tmp_path / "site0" / "next-ran").exists()
    assert result.sites["site1"].status == "skipped"
    assert not (tmp_path / "site1" / "rolled-back").exists()
    entry = read_log(project)[-1]
    assert entry["status"] == "interrupted" and entry["exit_code"] == 130


def test_bad_input_runs_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path)
    with pytest.raises(BadInput, match="unknown param 'nope'"):
        _run(project, params={"nope": "1"})
    with pytest.raises(BadInput, match=r"matches no site|no site"):
        _run(project, limit="does-not-exist")
    assert read_log(project) == []
    assert not (tmp_path / "site0" / "finally-ran").exists()


def test_missing_site_var_is_bad_input_before_anything_runs(tmp_path: Path) -> None:
    project = _project(tmp_path)
    text = (project / "inventories" / "test.yml").read_text()
    (project / "inventories" / "test.yml").write_text(text.replace("docroot:", "other_root:"))
    with pytest.raises(BadInput) as exc:
        _run(project)
    assert "docroot" in str(exc.value) and exc.value.line is not None
    assert read_log(project) == []


def test_one_locked_site_among_others_that_ran_is_a_failed_run_not_a_refused_one(tmp_path: Path) -> None:
    project = _project(tmp_path, sites=2)
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    (lock_dir / "site0.lock").write_text(json.dumps({"holder": "alice@other", "run_id": "r-other"}))
    result = _run(project)
    assert result.exit_code == ExitCode.SITE_FAILED  # 3 would claim that nothing started
    assert (result.sites["site0"].status, result.sites["site1"].status) == ("locked", "ok")
    assert read_log(project)[-1]["status"] == "failed"


def test_a_stop_request_ends_the_wait_for_a_lock_at_once(tmp_path: Path) -> None:
    project = _project(tmp_path)
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    (lock_dir / "site0.lock").write_text(json.dumps({"holder": "alice@other", "run_id": "r-other"}))
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    result = run(
        RunOptions(runbook="deploy", project=project, wait_lock=30), reporter=NullReporter(), cancel=cancel
    )
    assert time.monotonic() - started < 5, "SIGTERM must not wait out --wait-lock"
    assert result.exit_code == ExitCode.INTERRUPTED
    assert result.sites["site0"].status == "skipped"
    assert read_log(project)[-1]["status"] == "interrupted"


def test_lock_of_a_dead_run_on_this_controller_is_broken_at_once(tmp_path: Path) -> None:
    import socket
    import subprocess

    project = _project(tmp_path)
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs, as after a kill -9 of an earlier run
    holder = {"holder": f"tester@{socket.gethostname()}", "run_id": "r-crashed", "pid": gone.pid}
    (lock_dir / "site0.lock").write_text(json.dumps(holder))
    result = _run(project)
    assert result.exit_code == ExitCode.OK
    assert result.sites["site0"].lock_broken == holder
    # a live holder on this controller is respected
    holder = {"holder": f"tester@{socket.gethostname()}", "run_id": "r-alive", "pid": os.getpid()}
    (lock_dir / "site0.lock").write_text(json.dumps(holder))
    assert _run(project).exit_code == ExitCode.CANNOT_START


def test_a_torn_change_log_stops_the_run_before_anything_changes(tmp_path: Path) -> None:
    from maintainer.errors import BadInput

    project = _project(tmp_path)
    (project / "changelog.jsonl").write_text('{"torn line without end')
    with pytest.raises(BadInput, match=r"changelog\.jsonl"):
        _run(project)
    assert (tmp_path / "site0" / "app.conf").read_text() == "old config\n", "nothing may run"
    assert not list(project.glob("changelog.jsonl.unrecorded-*.json"))


FINALLY_RUNBOOK = """
name: deploy
version: 1.0.0
steps:
  - id: maint_on
    uses: shell
    with: {command: "touch {{ (site.docroot ~ '/maintenance') | quote }}"}
finally:
  - id: maint_off
    uses: shell
    continue_on_error: SOFT
    with: {command: "echo cannot leave maintenance mode >&2; exit 1"}
  - id: always
    uses: shell
    with: {command: "touch {{ (site.docroot ~ '/finally-ran') | quote }}"}
"""


def test_a_failed_finally_step_fails_the_site_and_the_other_finally_steps_still_run(tmp_path: Path) -> None:
    project = _project(tmp_path, FINALLY_RUNBOOK.replace("SOFT", "false"))
    result = _run(project)
    assert result.exit_code == ExitCode.SITE_FAILED
    site = result.sites["site0"]
    assert site.status == "failed"
    assert site.error == "finally step 'maint_off' failed: exited with 1: cannot leave maintenance mode"
    assert (tmp_path / "site0" / "finally-ran").exists(), "the remaining finally steps still ran"
    assert site.rollback == "none", "the main steps succeeded: nothing to roll back"
    (entry,) = read_log(project)
    assert entry["status"] == "failed" and entry["sites"]["site0"]["error"].startswith(
        "finally step 'maint_off'"
    )


def test_a_failed_finally_step_with_continue_on_error_keeps_the_site_ok(tmp_path: Path) -> None:
    project = _project(tmp_path, FINALLY_RUNBOOK.replace("SOFT", "true"))
    result = _run(project)
    assert result.exit_code == ExitCode.OK
    steps = {s.id: s.status for s in result.sites["site0"].steps}
    assert steps == {"maint_on": "ok", "maint_off": "failed", "always": "ok"}


def test_a_failed_finally_step_is_added_to_a_failed_sites_error(tmp_path: Path) -> None:
    runbook = FINALLY_RUNBOOK.replace("SOFT", "false").replace(
        "touch {{ (site.docroot ~ '/maintenance') | quote }}", "exit 5"
    )
    result = _run(_project(tmp_path, runbook))
    error = result.sites["site0"].error or ""
    assert error.startswith("step 'maint_on' failed: exited with 5")
    assert "; finally step 'maint_off' failed: exited with 1" in error


def test_a_canary_batch_that_failed_everywhere_stops_the_run_without_max_fail(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        """
        name: deploy
        version: 1.0.0
        serial: "25%"
        steps:
          - id: s
            uses: shell
            with:
              command: "touch {{ (site.docroot ~ '/ran') | quote }}; {{ 'exit 1' if site.name in ('site0', 'site1') else 'true' }}"
        """,
        sites=8,
    )
    result = _run(project)
    assert result.plan.max_fail is None
    assert result.exit_code == ExitCode.SITE_FAILED
    statuses = {n: r.status for n, r in result.sites.items()}
    assert statuses == {"site0": "failed", "site1": "failed", **{f"site{i}": "skipped" for i in range(2, 8)}}
    assert result.sites["site7"].error == (
        "not started: every site of the canary batch failed (site0, site1)"
    )
    assert not any((tmp_path / f"site{i}" / "ran").exists() for i in range(2, 8))
    assert read_log(project)[-1]["sites"]["site5"]["status"] == "skipped"


def test_a_canary_batch_with_one_success_lets_the_other_batches_run(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        """
        name: deploy
        version: 1.0.0
        serial: 2
        steps:
          - id: s
            uses: shell
            with:
              command: "{{ 'exit 1' if site.name in ('site0', 'site3') else 'true' }}"
        """,
        sites=6,
    )
    result = _run(project)
    statuses = [result.sites[f"site{i}"].status for i in range(6)]
    assert statuses == ["failed", "ok", "ok", "failed", "ok", "ok"], "max_fail unset: unlimited failures"


def test_unreachable_and_skipped_sites_say_where_they_were_to_run(tmp_path: Path) -> None:
    from tests.servers.sshd import free_port

    port = free_port()
    down = {
        "ansible_host": "127.0.0.1",
        "ansible_port": port,
        "ansible_user": "nobody-here",
        "maintainer_connect_timeout": 3,
        "maintainer_host_key_checking": False,
    }
    project = make_project(
        tmp_path,
        {
            "deploy@1.0.0": "name: deploy\nversion: 1.0.0\nserial: 1\nsteps:\n  - {id: a, uses: shell, with: {command: 'true'}}\n"
        },
        {"down": down, "later": local_site(tmp_path)},
    )
    result = _run(project)
    assert (result.sites["down"].status, result.sites["later"].status) == ("unreachable", "skipped")
    assert result.sites["down"].host == f"nobody-here@127.0.0.1:{port}"
    assert result.sites["later"].host == "local"
    sites = read_log(project)[-1]["sites"]
    assert (sites["down"]["host"], sites["later"]["host"]) == (f"nobody-here@127.0.0.1:{port}", "local")


def test_list_params_take_a_json_or_yaml_flow_list(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        """
        name: deploy
        version: 1.0.0
        params:
          fail_sites: {type: list, default: []}
        steps:
          - id: show
            uses: debug
            with: {msg: "{{ params.fail_sites | join('|') }}"}
        """,
    )
    for given, expected in (
        ('["s1","s2"]', "s1|s2"),
        ("[s1, 's 2']", "s1|s 2"),
        ("s1,s2", "s1|s2"),
        ("[]", ""),
    ):
        result = _run(project, params={"fail_sites": given})
        assert result.sites["site0"].steps[0].outputs["msg"] == expected, given
    with pytest.raises(BadInput, match="param 'fail_sites' starts with '\\[' but is not a flow list"):
        _run(project, params={"fail_sites": '["s1", "s2"'})
