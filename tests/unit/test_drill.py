"""The pure parts of a restore drill: RPO gaps, SLA targets, inventory vars, scratch names, the dump filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from maintainer.backup.database import DefinerFilter
from maintainer.backup.drill import (
    DrillRecord,
    Sla,
    drill_settings,
    max_gap,
    scratch_db_name,
    site_sla,
    sla_misses,
)
from maintainer.errors import BadInput
from maintainer.inventory import Site

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
WEEK = timedelta(days=7)


def site(**vars_: object) -> Site:
    return Site(name="shop", vars=dict(vars_), groups=[])


def test_the_gap_to_now_starts_when_the_newest_backup_finished():
    starts = [NOW - 48 * H, NOW - 24 * H, NOW - 3 * H]
    assert max_gap(starts, NOW - 2 * H, NOW, WEEK) == 24 * 3600  # 48h -> 24h ago
    assert max_gap([NOW - 10 * H], NOW - 9 * H, NOW, WEEK) == 9 * 3600


def test_the_largest_gap_between_backups_counts():
    starts = [NOW - 100 * H, NOW - 70 * H, NOW - 20 * H, NOW - 1 * H]
    assert max_gap(starts, NOW - 0.5 * H, NOW, WEEK) == 50 * 3600


def test_gaps_are_clipped_to_the_window_and_older_backups_only_anchor():
    starts = [NOW - 30 * 24 * H, NOW - 2 * H]  # a month-old backup, then nothing until 2h ago
    assert max_gap(starts, NOW - 1 * H, NOW, WEEK) == (7 * 24 - 2) * 3600
    # a backup older than the window and nothing since: the whole window is the gap
    assert max_gap([NOW - 10 * 24 * H], NOW - 10 * 24 * H, NOW, WEEK) == WEEK.total_seconds()
    # a site whose first backup is inside the window: nothing before it counts
    assert max_gap([NOW - 5 * H], NOW - 4 * H, NOW, WEEK) == 4 * 3600


def test_sla_misses_name_the_target_and_by_how_much():
    sla = Sla(rto=1800, rpo=86400)
    assert sla_misses(sla, 600, 3600) == []
    misses = sla_misses(sla, 2000, 90000)
    assert [name for name, _ in misses] == ["rto", "rpo"]
    assert misses[0][1] == "RTO 33.3m is 3.3m over the 30.0m target"
    assert misses[1][1] == "RPO 25.0h is 60.0m over the 24.0h target"
    assert sla_misses(Sla(rto=None, rpo=60), 10_000, 30) == []
    assert sla_misses(None, 10_000, 10_000) == []
    assert sla_misses(sla, None, 1) == []  # never served: that is a failure, not an SLA miss


def test_the_sla_var_takes_the_code_bases_durations():
    assert site_sla(site(sla={"rto": "30m", "rpo": "24h"})) == Sla(rto=1800.0, rpo=86400.0)
    assert site_sla(site(sla={"rpo": "1d"})) == Sla(rto=None, rpo=86400.0)
    assert site_sla(site(sla={"rto": 90})) == Sla(rto=90.0, rpo=None)
    assert site_sla(site()) is None


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"rto": "soon"}, "sla.rto"),
        ({"rto": 0}, "sla.rto"),
        ({"rpo": True}, "sla.rpo"),
        ({"rtp": "1h"}, "sla.rtp"),
        ("30m", "sla"),
    ],
)
def test_a_bad_sla_is_bad_input_naming_the_key(value, key):
    with pytest.raises(BadInput) as caught:
        site_sla(site(sla=value))
    assert caught.value.key == key and "shop" in str(caught.value) and "Fix:" in str(caught.value)


def test_drill_settings_are_checked():
    assert drill_settings(site()).smoke_path == "/"
    assert drill_settings(site(drill={"scratch_dir": "/srv/scratch", "smoke": False})).smoke is False
    for bad, key in (({"scratch": "/x"}, "drill.scratch"), ({"smoke_path": "home"}, "drill.smoke_path")):
        with pytest.raises(BadInput) as caught:
            drill_settings(site(drill=bad))
        assert caught.value.key == key


def test_scratch_database_names_fit_the_engines_limit():
    assert scratch_db_name("shop", "abc123") == "shop_drill_abc123"
    long = scratch_db_name("x" * 80, "abc123")
    assert len(long) == 63 and long.endswith("_drill_abc123")
    assert len(scratch_db_name("é" * 40, "abc123").encode()) <= 63


def test_the_record_says_sla_missed_only_without_a_failure():
    record = DrillRecord(backup="b", sla_missed=["rto"])
    assert record.outcome == "sla_missed"
    record.fail("smoke", "HTTP 500")
    record.fail("cleanup", "later problems do not replace the cause")
    assert record.outcome == "failed" and record.record()["failure"] == {
        "stage": "smoke",
        "message": "HTTP 500",
    }
    assert DrillRecord(backup="b").record()["outcome"] == "passed"


DUMP = (
    b"CREATE TABLE t (a int);\n"
    b"/*!50003 SET sql_mode = '' */ ;\n"
    b"ALTER DATABASE `src` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ;\n"
    b"/*!50003 CREATE*/ /*!50020 DEFINER=`u`@`%`*/ /*!50003 FUNCTION `f`() RETURNS int RETURN 1 */;;\n"
    b"ALTER DATABASE `src` CHARACTER SET latin1 COLLATE latin1_swedish_ci ;\n"
    b"INSERT INTO t VALUES (1); -- ALTER DATABASE `src` in row data stays\n"
)


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_a_dump_restored_into_another_database_never_alters_the_source(chunk):
    out: list[bytes] = []
    stripper = DefinerFilter(lambda view: out.append(bytes(view)), rename=("src", "src_drill_abc123"))
    for i in range(0, len(DUMP), chunk):
        stripper.write(DUMP[i : i + chunk])
    stripper.close()
    text = b"".join(out)
    assert b"ALTER DATABASE `src` CHARACTER" not in text
    assert text.count(b"ALTER DATABASE `src_drill_abc123` CHARACTER SET") == 2
    assert b"DEFINER" not in text and stripper.renamed == 2
    assert b"-- ALTER DATABASE `src` in row data stays" in text


def test_a_dump_restored_in_place_keeps_its_alter_database_lines():
    out: list[bytes] = []
    stripper = DefinerFilter(lambda view: out.append(bytes(view)), rename=("src", "src"))
    stripper.write(DUMP)
    stripper.close()
    assert b"".join(out).count(b"ALTER DATABASE `src` CHARACTER SET") == 2
