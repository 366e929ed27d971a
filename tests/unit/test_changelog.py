"""The change log: append, hash chain, verify, query, CSV, and the documented auditor recipes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from maintainer.changelog import (
    CSV_COLUMNS,
    SCHEMA_VERSION,
    ZERO_HASH,
    ChangeLog,
    ChangeLogCorrupt,
    ChangeLogSchemaTooNew,
    only_sites,
    parse_runbook_filter,
    parse_since,
    to_csv,
)
from maintainer.errors import BadInput, ExitCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "CHANGELOG-FORMAT.md"


def make_entry(
    n: int,
    *,
    sites: dict[str, str] | None = None,
    runbook: str = "cms-update",
    status: str = "ok",
    started: str | None = None,
) -> dict[str, Any]:
    sites = {"shop1": "ok"} if sites is None else sites
    return {
        "run_id": f"run-{n}",
        "started": started or f"2024-05-{n % 28 + 1:02d}T10:00:00+00:00",
        "finished": f"2024-05-{n % 28 + 1:02d}T10:05:00+00:00",
        "operator": "alice",
        "controller": "ctl1",
        "trigger": {"kind": "manual", "ci_job_url": None},
        "ticket": f"OPS-{n}",
        "runbook": {"name": runbook, "version": "2.1.0", "digest": "sha256:ab"},
        "inventory": {"sources": ["inventories/prod.yml"], "digest": "sha256:cd"},
        "params": {"version": "6.5", "duration": 1.0},
        "status": status,
        "sites": {name: {"status": st, "steps": [], "changes": []} for name, st in sites.items()},
    }


def filled(tmp_path: Path, count: int) -> ChangeLog:
    log = ChangeLog(tmp_path / "changelog.jsonl")
    for n in range(1, count + 1):
        log.append(make_entry(n))
    return log


def lines(log: ChangeLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)  # bytes.splitlines: only \n/\r here


def write_lines(log: ChangeLog, new: list[bytes]) -> None:
    log.path.write_bytes(b"".join(new))


def forge(record: dict[str, Any]) -> bytes:
    """A line built from the documented rule only (not the module's helpers): what an attacker can do."""
    body = {k: v for k, v in record.items() if k != "hash"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hashlib.sha256(canon).hexdigest()
    return b'{"hash":"' + digest.encode() + b'",' + canon[1:] + b"\n"


def edit(raw: bytes, **changes: Any) -> dict[str, Any]:
    record = json.loads(raw)
    record.update(changes)
    return record


# -- append ------------------------------------------------------------------------------------


def test_append_builds_the_chain(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "deep" / "dir" / "changelog.jsonl")
    entry = make_entry(1)
    first = log.append(entry)
    second = log.append(make_entry(2))

    assert "seq" not in entry  # the caller's dict is left alone
    assert first["schema"] == SCHEMA_VERSION == 1
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["prev_hash"] == ZERO_HASH == "0" * 64
    assert second["prev_hash"] == first["hash"]
    assert list(log.entries()) == [first, second]  # what append returns is what readers read


def test_hash_is_sha256_of_canonical_json_without_hash(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "c.jsonl")
    record = log.append(make_entry(1) | {"note": "café ✓ \u2028 \x7f", "ratio": 1.0})
    body = {k: v for k, v in record.items() if k != "hash"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert record["hash"] == hashlib.sha256(canon).hexdigest()
    # the documented layout: hash first, the rest of the line is the hashed bytes minus "{"
    line = log.path.read_bytes()
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # U+2028 is not a line break here
    assert line[:9] == b'{"hash":"' and line[73:75] == b'",'
    assert line[9:73].decode() == record["hash"]
    assert hashlib.sha256(b"{" + line[75:-1]).hexdigest() == record["hash"]


def test_log_owned_keys_are_overwritten(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "c.jsonl")
    record = log.append(make_entry(1) | {"seq": 99, "hash": "x", "prev_hash": "y", "schema": 7})
    assert (record["seq"], record["prev_hash"], record["schema"]) == (1, ZERO_HASH, 1)
    assert log.verify().ok


def test_non_json_values_are_normalised_and_nan_is_refused(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "c.jsonl")
    odd: dict[Any, Any] = {
        "path": Path("/srv/www"),
        "when": datetime(2024, 5, 1, tzinfo=UTC),
        "t": (1, 2),
        3: "x",
        "bad": "a\udcff",
    }
    record = log.append(odd)
    assert record["path"] == "/srv/www" and record["t"] == [1, 2] and record["3"] == "x"
    assert record["bad"] == "a?"  # a lone surrogate cannot be UTF-8
    assert list(log.entries()) == [record]
    with pytest.raises(ValueError, match="cannot be stored as JSON"):
        log.append({"duration": float("nan")})
    assert log.verify().entries == 1  # nothing half-written


def test_new_file_mode_parent_dir_and_lock_sidecar(tmp_path: Path) -> None:
    old = os.umask(0o077)  # the mode must not depend on the operator's umask
    try:
        log = ChangeLog(tmp_path / "var" / "log" / "changelog.jsonl")
        log.append(make_entry(1))
    finally:
        os.umask(old)
    assert log.path.stat().st_mode & 0o777 == 0o640
    assert log.path.parent.is_dir()
    assert (tmp_path / "var" / "log" / "changelog.jsonl.lock").exists()
    os.chmod(log.path, 0o600)  # an existing file keeps its mode
    log.append(make_entry(2))
    assert log.path.stat().st_mode & 0o777 == 0o600


def test_append_reads_only_the_tail(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    raw = lines(log)
    raw[1] = b"this is not json at all\n"  # an early garbage line must not stop appends
    write_lines(log, raw)
    assert log.append(make_entry(6))["seq"] == 6
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 2


def test_append_after_a_line_bigger_than_the_tail_block(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "c.jsonl")
    big = log.append(make_entry(1) | {"blob": "x" * 300_000})
    after = log.append(make_entry(2))
    assert after["seq"] == 2 and after["prev_hash"] == big["hash"]
    assert log.verify().ok


def test_append_refuses_to_chain_onto_a_torn_line(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    with log.path.open("ab") as fh:
        fh.write(b'{"hash":"abc","seq":3,"prev')  # a crash mid-write
    with pytest.raises(ChangeLogCorrupt, match="incomplete") as exc:
        log.append(make_entry(3))
    assert exc.value.exit_code == ExitCode.BAD_INPUT
    assert "log verify" in str(exc.value)


def test_append_terminates_a_complete_last_line_that_lost_its_newline(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    log.path.write_bytes(log.path.read_bytes().rstrip(b"\n"))
    assert log.verify().ok
    assert log.append(make_entry(3))["seq"] == 3
    assert log.verify().ok and log.verify().entries == 3


def test_append_refuses_a_log_from_a_newer_schema(tmp_path: Path) -> None:
    log = filled(tmp_path, 1)
    raw = lines(log)
    raw.append(forge(edit(raw[0], schema=2, seq=2, prev_hash=json.loads(raw[0])["hash"])))
    write_lines(log, raw)
    with pytest.raises(ChangeLogSchemaTooNew, match="schema 2"):
        log.append(make_entry(2))


# -- entries -----------------------------------------------------------------------------------


def test_entries_streams_and_reports_garbage_by_line(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    raw = lines(log)
    raw.insert(2, b"garbage\n")
    write_lines(log, raw)
    seen = []
    with pytest.raises(ChangeLogCorrupt) as exc:
        for record in log.entries():
            seen.append(record["seq"])
    assert seen == [1, 2]
    assert exc.value.position == 3
    assert "line 3 is not valid JSON" in str(exc.value)


def test_entries_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert list(ChangeLog(tmp_path / "nope.jsonl").entries()) == []


# -- verify ------------------------------------------------------------------------------------


def test_empty_or_missing_log_verifies(tmp_path: Path) -> None:
    missing = ChangeLog(tmp_path / "missing.jsonl").verify()
    assert (missing.ok, missing.entries, missing.head_hash, missing.first_bad_seq) == (True, 0, None, None)
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert ChangeLog(tmp_path / "empty.jsonl").verify().ok


def test_good_log_verifies_with_head(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    last = list(log.entries())[-1]
    report = log.verify()
    assert (report.ok, report.entries, report.head_hash, report.reason) == (True, 5, last["hash"], None)


def test_edited_entry(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    raw = lines(log)
    raw[2] = raw[2].replace(b'"operator":"alice"', b'"operator":"mallory"')
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 3
    assert report.reason == "entry 3 was edited: its hash does not match its content"
    assert report.entries == 2  # the good ones before it


def test_edited_entry_with_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    raw = lines(log)
    raw[3] = forge(edit(raw[3], operator="mallory"))
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 5
    assert report.reason is not None
    assert report.reason.startswith("entry 5 does not chain to entry 4 (prev_hash mismatch)")


def test_rehashed_last_entry_needs_expect_head(tmp_path: Path) -> None:
    log = filled(tmp_path, 4)
    head = log.verify().head_hash
    assert head is not None
    raw = lines(log)
    raw[-1] = forge(edit(raw[-1], status="ok", operator="mallory"))
    write_lines(log, raw)
    assert log.verify().ok  # documented limit: nothing chains to the last entry
    report = log.verify(expect_head=head)
    # indistinguishable from a cut tail: no entry is named bad, the reason says where the log ends
    assert not report.ok and report.first_bad_seq is None
    assert report.reason is not None and report.reason.startswith("the log ends at entry 4 (hash ")
    assert "or the last entry was rewritten" in report.reason


def test_removed_entry(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    raw = lines(log)
    del raw[3]
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 4
    assert report.reason == "entry 4 is missing or out of order: expected seq 4, found 5"


def test_removed_first_entry(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    write_lines(log, lines(log)[1:])
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 1
    assert "expected seq 1, found 2" in (report.reason or "")


def test_removed_entry_with_the_rest_renumbered(tmp_path: Path) -> None:
    log = filled(tmp_path, 4)
    raw = lines(log)
    del raw[1]
    raw[1] = forge(edit(raw[1], seq=2))  # renumbered and re-hashed: its link is still to entry 2
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 2
    assert (report.reason or "").startswith("entry 2 does not chain to entry 1")


def test_inserted_entry(tmp_path: Path) -> None:
    log = filled(tmp_path, 4)
    raw = lines(log)
    # a well-formed forgery that chains to entry 2 and takes seq 3
    fake = forge(make_entry(9) | {"schema": 1, "seq": 3, "prev_hash": json.loads(raw[1])["hash"]})
    raw.insert(2, fake)
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 4
    assert "entry 4 is missing or out of order: expected seq 4, found 3" in (report.reason or "")


def test_reordered_entries(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    raw = lines(log)
    raw[2], raw[3] = raw[3], raw[2]
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 3
    assert report.reason == "entry 3 is missing or out of order: expected seq 3, found 4"


def test_truncated_tail_is_caught_only_with_expect_head(tmp_path: Path) -> None:
    log = filled(tmp_path, 5)
    head = log.verify().head_hash
    assert head is not None
    write_lines(log, lines(log)[:3])
    assert log.verify().ok
    report = log.verify(expect_head=head)
    assert not report.ok and report.entries == 3 and report.first_bad_seq is None
    assert (report.reason or "").startswith(f"the log ends at entry 3 (hash {report.head_hash})")
    assert f"the expected head {head} is not the hash of any entry" in (report.reason or "")
    assert "entries were removed from the end" in (report.reason or "")


def test_expect_head_of_an_older_entry_passes_once_the_log_has_grown(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    head = log.verify().head_hash
    assert head is not None
    log.append(make_entry(4))
    assert log.verify(expect_head=head.upper()).ok  # case and whitespace forgiven
    assert log.verify(expect_head=f" {head}\n").ok


def test_expect_head_on_an_emptied_log_fails(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    head = log.verify().head_hash
    assert head is not None
    log.path.write_bytes(b"")
    report = log.verify(expect_head=head)
    assert not report.ok and report.first_bad_seq is None and report.entries == 0
    assert (report.reason or "").startswith("the log has no entries, and the expected head")


def test_malformed_expect_head_is_bad_input(tmp_path: Path) -> None:
    log = filled(tmp_path, 1)
    with pytest.raises(BadInput, match="not a sha256") as exc:
        log.verify(expect_head="abc")
    assert exc.value.fix


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        (b"not json\n", "line 3 is not valid JSON"),
        (b"\n", "line 3 is empty, so it is not valid JSON"),
        (b"[1, 2]\n", "line 3 is not a JSON object"),
        (b"\xff\xfe\n", "line 3 is not valid JSON"),
    ],
)
def test_garbage_lines(tmp_path: Path, bad_line: bytes, reason: str) -> None:
    log = filled(tmp_path, 4)
    raw = lines(log)
    raw.insert(2, bad_line)
    write_lines(log, raw)
    report = log.verify()
    assert (report.ok, report.first_bad_seq, report.reason, report.entries) == (False, 3, reason, 2)


def test_torn_last_line_is_reported(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    with log.path.open("ab") as fh:
        fh.write(b'{"hash":"ab')
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 3 and report.reason == "line 3 is not valid JSON"


def test_future_schema_is_reported_not_misread(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    raw = lines(log)
    # a v2 record may hash differently: it must not be called "edited"
    raw.append(b'{"hash":"whatever-v2-does","schema":2,"seq":3,"chain":{"prev":"..."}}\n')
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 3 and report.entries == 2
    assert report.reason == (
        "entry 3 uses change-log schema 2, newer than this maintainer understands (up to 1): "
        "upgrade maintainer to verify it"
    )


def test_missing_schema_is_reported(tmp_path: Path) -> None:
    log = filled(tmp_path, 1)
    raw = lines(log)
    record = edit(raw[0])
    del record["schema"]
    raw[0] = forge(record)
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok and "has no valid schema number" in (report.reason or "")


def test_reformatted_line_is_reported_as_rewritten(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    raw = lines(log)
    raw[0] = json.dumps(json.loads(raw[0]), sort_keys=True).encode() + b"\n"  # same content, other layout
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 1
    assert "was rewritten" in (report.reason or "")


def test_edited_seq_counts_as_an_edit(tmp_path: Path) -> None:
    log = filled(tmp_path, 3)
    raw = lines(log)
    raw[1] = raw[1].replace(b'"seq":2', b'"seq":7')
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 7
    assert report.reason == "entry 7 (line 2) was edited: its hash does not match its content"


# -- concurrency -------------------------------------------------------------------------------


def _append_many(path: str, worker: int, count: int) -> None:
    log = ChangeLog(Path(path))
    for n in range(count):
        log.append({"run_id": f"w{worker}-{n}", "worker": worker, "n": n})


def test_concurrent_appenders_get_consecutive_seqs_and_a_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded pytest
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 25)) for w in range(4)]
    for proc in procs:
        proc.start()
    log = ChangeLog(path)
    checks = 0
    # readers running alongside the writers never see a half line
    while any(proc.is_alive() for proc in procs):
        report = log.verify()
        assert report.ok, report
        checks += 1
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    report = log.verify()
    assert (report.ok, report.entries) == (True, 100), report
    records = list(log.entries())
    assert [r["seq"] for r in records] == list(range(1, 101))
    assert sorted(r["run_id"] for r in records) == sorted(f"w{w}-{n}" for w in range(4) for n in range(25))
    for worker in range(4):  # each process's own appends stay in its order
        assert [r["n"] for r in records if r["worker"] == worker] == list(range(25))
    assert checks >= 1


# -- query -------------------------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> ChangeLog:
    log = ChangeLog(tmp_path / "c.jsonl")
    log.append(make_entry(1, sites={"shop1": "ok", "shop2": "ok"}, started="2024-05-01T10:00:00Z"))
    log.append(
        make_entry(
            2,
            sites={"blog": "failed"},
            runbook="backup",
            status="failed",
            started="2024-05-10T10:00:00+00:00",
        )
    )
    log.append(
        make_entry(
            3,
            sites={"shop2": "unreachable", "blog": "ok"},
            status="failed",
            started="2024-05-20T12:00:00+02:00",
        )
    )
    # an older, sparser shape: no runbook mapping, sites as a list, no started
    log.append({"run_id": "old", "runbook": "legacy", "sites": ["shop1"], "status": "ok"})
    log.append({"run_id": "bare"})
    return log


def run_ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["run_id"] for e in entries]


def test_query_all_and_by_site(mixed: ChangeLog) -> None:
    assert run_ids(mixed.query()) == ["run-1", "run-2", "run-3", "old", "bare"]
    assert run_ids(mixed.query(site="shop1")) == ["run-1", "old"]
    assert run_ids(mixed.query(site="shop*")) == ["run-1", "run-3", "old"]
    assert run_ids(mixed.query(site="shop[2]")) == ["run-1", "run-3"]
    assert mixed.query(site="nowhere") == []


def test_query_by_runbook_since_and_status(mixed: ChangeLog) -> None:
    assert run_ids(mixed.query(runbook="backup")) == ["run-2"]
    assert run_ids(mixed.query(runbook="legacy")) == ["old"]
    assert run_ids(mixed.query(runbook="cms-*")) == ["run-1", "run-3"]
    assert run_ids(mixed.query(since=datetime(2024, 5, 10, tzinfo=UTC))) == ["run-2", "run-3"]
    assert run_ids(mixed.query(since=datetime(2024, 5, 20, 10, 30))) == []  # naive = UTC; run-3 is 10:00Z
    assert run_ids(mixed.query(status="failed")) == ["run-2", "run-3"]
    assert run_ids(mixed.query(status="unreachable")) == ["run-3"]  # a site status counts too
    # with a site, a site status counts only for that site: shop2 was unreachable in run-3 (blog was ok)
    assert run_ids(mixed.query(site="shop2", status="ok")) == ["run-1"]
    assert run_ids(mixed.query(site="shop2", status="unreachable")) == ["run-3"]
    assert run_ids(mixed.query(site="blog", status="unreachable")) == []
    assert run_ids(mixed.query(site="blog", runbook="cms-update", status="failed")) == ["run-3"]


# -- parse_since -------------------------------------------------------------------------------

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("12h", NOW - timedelta(hours=12)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2w", NOW - timedelta(weeks=2)),
        (" 3 d ", NOW - timedelta(days=3)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T12:30:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    got = parse_since(text, now=NOW)
    assert got == expected and got.tzinfo is not None and got.utcoffset() == timedelta(0)


def test_parse_since_relative_defaults_to_now() -> None:
    assert abs(parse_since("1h") - (datetime.now(UTC) - timedelta(hours=1))) < timedelta(seconds=5)


@pytest.mark.parametrize("text", ["", "yesterday", "7", "7M", "7y", "-3d", "2024-13-01", "99999999999999w"])
def test_parse_since_rejects_bad_text_with_a_fix(text: str) -> None:
    with pytest.raises(BadInput) as exc:
        parse_since(text, now=NOW)
    assert exc.value.fix and "7d" in exc.value.fix
    assert exc.value.exit_code == ExitCode.BAD_INPUT


# -- CSV ---------------------------------------------------------------------------------------


def test_to_csv_one_row_per_entry_and_site(mixed: ChangeLog) -> None:
    buf = io.StringIO(newline="")
    to_csv(mixed.entries(), buf)
    rows = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    body = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]]
    assert [(r["seq"], r["site"], r["site_status"], r["run_status"]) for r in body] == [
        ("1", "shop1", "ok", "ok"),
        ("1", "shop2", "ok", "ok"),
        ("2", "blog", "failed", "failed"),
        ("3", "blog", "ok", "failed"),  # sorted: the canonical form sorts keys
        ("3", "shop2", "unreachable", "failed"),
        ("4", "shop1", "", "ok"),
        ("5", "", "", ""),  # no sites: still one row
    ]
    first = body[0]
    assert (first["runbook"], first["version"], first["operator"], first["trigger"], first["ticket"]) == (
        "cms-update",
        "2.1.0",
        "alice",
        "manual",
        "OPS-1",
    )
    assert len(first["hash"]) == 64 and first["started"] == "2024-05-01T10:00:00Z"
    assert body[5]["runbook"] == "legacy"


def test_to_csv_defuses_spreadsheet_formulas() -> None:
    buf = io.StringIO(newline="")
    to_csv([{"seq": 1, "ticket": '=HYPERLINK("http://evil")', "operator": "@bob", "sites": {}}], buf)
    row = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))[1]
    assert row[CSV_COLUMNS.index("ticket")] == '\'=HYPERLINK("http://evil")'
    assert row[CSV_COLUMNS.index("operator")] == "'@bob"


# -- the auditor recipes in docs/CHANGELOG-FORMAT.md -------------------------------------------


def recipe(kind: str) -> str:
    match = re.search(rf"<!-- recipe:{kind}\b.*?-->\s*```\w+\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"no {kind} recipe in {DOC}"
    return match.group(1)


def audit_log(tmp_path: Path) -> ChangeLog:
    """Content jq would re-serialise differently: 1.0, non-ASCII, DEL, U+2028."""
    log = ChangeLog(tmp_path / "audit.jsonl")
    for n in range(1, 5):
        log.append(make_entry(n) | {"note": 'naïve ✓ \x7f \u2028 "q" \\', "params": {"x": 1.0, "y": 1e-7}})
    return log


def tampered_copies(log: ChangeLog, tmp_path: Path) -> dict[str, Path]:
    raw = lines(log)
    cases = {
        "edited": [raw[0], raw[1].replace(b"alice", b"carol"), *raw[2:]],
        "rehashed": [raw[0], forge(edit(raw[1], operator="carol")), *raw[2:]],
        "removed": raw[:1] + raw[2:],
        "reordered": [raw[0], raw[2], raw[1], raw[3]],
        "garbage": [*raw[:2], b"oops\n", *raw[2:]],
    }
    out = {}
    for name, content in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(b"".join(content))
        assert not ChangeLog(path).verify().ok, name
        out[name] = path
    return out


def run_recipe(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def check_recipe(argv: list[str], log: ChangeLog, tmp_path: Path) -> None:
    report = log.verify()
    good = run_recipe([*argv, str(log.path)])
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip() == f"ok: 4 entries, head {report.head_hash}"
    assert run_recipe([*argv, str(log.path), str(report.head_hash)]).returncode == 0
    for name, path in tampered_copies(log, tmp_path).items():
        bad = run_recipe([*argv, str(path)])
        assert bad.returncode == 1, (name, bad.stdout, bad.stderr)
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_bytes(b"".join(lines(log)[:3]))
    assert run_recipe([*argv, str(truncated)]).returncode == 0  # undetectable without the head...
    cut = run_recipe([*argv, str(truncated), str(report.head_hash)])
    assert cut.returncode == 1 and "removed from the end" in cut.stdout + cut.stderr  # ...caught with it
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert run_recipe([*argv, str(empty)]).returncode == 0


def test_python_stdlib_recipe_from_the_doc(tmp_path: Path) -> None:
    script = tmp_path / "verify_changelog.py"
    script.write_text(recipe("python"))
    check_recipe([sys.executable, "-I", str(script)], audit_log(tmp_path), tmp_path)


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "jq", "sha256sum", "grep", "cut")),
    reason="needs bash, jq and sha256sum",
)
def test_jq_sha256sum_recipe_from_the_doc(tmp_path: Path) -> None:
    script = tmp_path / "verify-changelog.sh"
    script.write_text(recipe("shell"))
    check_recipe(["bash", str(script)], audit_log(tmp_path), tmp_path)


def test_doc_mentions_the_head_hash_advice() -> None:
    text = DOC.read_text()
    assert "head_hash" in text and "expect_head" in text and "removed from the end" in text


# -- throughput (a smoke bound, not a benchmark) -----------------------------------------------


def test_append_is_fast_enough_for_one_entry_per_run(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "c.jsonl")
    started = time.perf_counter()
    for n in range(50):
        log.append(make_entry(n))
    assert time.perf_counter() - started < 10  # fsync-bound; generous for slow CI disks


# -- pre-flight: check_ready -------------------------------------------------------------------


def test_check_ready_accepts_a_good_empty_or_missing_log(tmp_path: Path) -> None:
    filled(tmp_path, 3).check_ready()
    (tmp_path / "empty.jsonl").write_bytes(b"")
    ChangeLog(tmp_path / "empty.jsonl").check_ready()
    fresh = ChangeLog(tmp_path / "log.jsonl")
    fresh.check_ready()  # a first log in an existing directory
    assert not fresh.path.exists()
    assert fresh.append(make_entry(1))["seq"] == 1


def test_check_ready_refuses_a_missing_directory_instead_of_starting_a_second_log(tmp_path: Path) -> None:
    typo = ChangeLog(tmp_path / "nonexistent" / "dir" / "log.jsonl")
    with pytest.raises(BadInput, match="does not exist") as exc:
        typo.check_ready()
    assert exc.value.fix and "mkdir -p" in exc.value.fix
    assert not (tmp_path / "nonexistent").exists(), "a typo must not create directories"


def test_check_ready_accepts_a_last_line_that_only_lost_its_newline(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    log.path.write_bytes(log.path.read_bytes().rstrip(b"\n"))
    log.check_ready()


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda raw: [*raw, b'{"hash":"abc","seq":3,"prev'], "incomplete"),
        (lambda raw: [*raw, b"garbage\n"], "not valid JSON"),
        (lambda raw: [*raw, b"\n"], "last line is empty"),
        (lambda raw: [*raw[:-1], raw[-1].replace(b'"status":"ok"', b'"status":"failed"')], "was edited"),
        (lambda raw: [*raw[:-1], json.dumps(json.loads(raw[-1])).encode() + b"\n"], "was rewritten"),
    ],
    ids=["torn", "garbage", "empty-line", "edited", "relaid"],
)
def test_check_ready_refuses_a_damaged_tail_as_bad_input(tmp_path: Path, damage: Any, needle: str) -> None:
    log = filled(tmp_path, 2)
    write_lines(log, damage(lines(log)))
    before = log.path.read_bytes()
    with pytest.raises(BadInput, match=needle) as exc:
        log.check_ready()
    assert exc.value.exit_code == ExitCode.BAD_INPUT
    assert exc.value.file == str(log.path)
    assert exc.value.fix and "maintainer log verify" in exc.value.fix
    assert log.path.read_bytes() == before  # a check changes nothing


def test_append_refuses_to_restart_the_chain_after_an_empty_last_line(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    write_lines(log, [*lines(log), b"\n"])
    with pytest.raises(ChangeLogCorrupt, match="empty"):
        log.append(make_entry(3))  # before: it was written as seq 1 with a zero prev_hash


def test_check_ready_refuses_a_newer_schema_with_the_upgrade_fix(tmp_path: Path) -> None:
    log = filled(tmp_path, 1)
    raw = lines(log)
    raw.append(forge(edit(raw[0], schema=2, seq=2, prev_hash=json.loads(raw[0])["hash"])))
    write_lines(log, raw)
    with pytest.raises(BadInput, match="schema 2") as exc:
        log.check_ready()
    assert exc.value.fix and "upgrade" in exc.value.fix


@pytest.mark.parametrize("where", ["/proc/nope/x.jsonl", "a-file/x.jsonl", "a-dir"])
def test_check_ready_refuses_a_path_that_cannot_be_written(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-dir").mkdir()
    log = ChangeLog(tmp_path / where)
    with pytest.raises(BadInput) as exc:
        log.check_ready()
    assert exc.value.file == str(log.path) and exc.value.key == "changelog"
    assert exc.value.fix and "maintainer.toml" in exc.value.fix


# -- query: versions, site rows, checked reading ------------------------------------------------


def test_query_by_runbook_version_like_runbook_refs(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path / "c.jsonl")
    for n, version in enumerate(["1.0.0", "1.1.0", "1.10.2", "2.0.0"], 1):
        entry = make_entry(n, runbook="site-health")
        entry["runbook"]["version"] = version
        log.append(entry)
    assert run_ids(log.query(runbook="site-health@1.1.0")) == ["run-2"]
    assert run_ids(log.query(runbook="site-health@1.1")) == ["run-2"]  # not 1.10.2
    assert run_ids(log.query(runbook="site-health@1")) == ["run-1", "run-2", "run-3"]
    assert run_ids(log.query(runbook="site-*@2")) == ["run-4"]
    assert log.query(runbook="site-health@3") == []
    assert log.query(runbook="other@1") == []


@pytest.mark.parametrize("text", ["x@", "x@1.x", "x@1.2.3.4", "@1", "x@latest"])
def test_parse_runbook_filter_rejects_what_is_no_version(text: str) -> None:
    with pytest.raises(BadInput) as exc:
        parse_runbook_filter(text)
    assert exc.value.key == "--runbook" and exc.value.fix and "NAME@MAJOR" in exc.value.fix


def test_only_sites_keeps_the_matching_sites(mixed: ChangeLog) -> None:
    run3 = mixed.query(site="shop2")[1]
    assert list(only_sites(run3, "shop2")["sites"]) == ["shop2"]
    assert list(run3["sites"]) == ["blog", "shop2"]  # the record itself is left whole
    assert only_sites(run3, None) == run3
    old = mixed.query(runbook="legacy")[0]
    assert only_sites(old, "shop*")["sites"] == ["shop1"] and only_sites(old, "blog")["sites"] == []


def test_to_csv_with_a_site_has_only_that_sites_rows(mixed: ChangeLog) -> None:
    buf = io.StringIO(newline="")
    to_csv(mixed.query(site="shop2"), buf, site="shop2")
    rows = list(csv.DictReader(io.StringIO(buf.getvalue(), newline="")))
    assert [(r["seq"], r["site"], r["site_status"]) for r in rows] == [
        ("1", "shop2", "ok"),
        ("3", "shop2", "unreachable"),
    ]


def test_query_checked_reports_tampering_and_reads_past_garbage(tmp_path: Path) -> None:
    log = filled(tmp_path, 4)
    entries, report = log.query_checked()
    assert report.ok and [e["seq"] for e in entries] == [1, 2, 3, 4]
    raw = lines(log)
    raw[1] = raw[1].replace(b'"ticket":"OPS-2"', b'"ticket":"OPS-X"')
    raw.insert(3, b"garbage\n")
    write_lines(log, raw)
    entries, report = log.query_checked(site="shop1")
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]  # shown anyway, with a report
    assert (report.ok, report.first_bad_seq) == (False, 2) and "edited" in (report.reason or "")
    assert report == log.verify()
