"""The pure parts of a restore drill: RPO gaps, SLA targets, inventory vars, scratch names, the dump filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from maintainer.backup.database import DefinerFilter
from maintainer.backup.drill import (
    DrillRecord,
    Sla,
    _grouped,
    _set_array_key,
    _set_define,
    _set_property,
    drill_only_hosts,
    drill_settings,
    max_gap,
    rpo_exposure,
    scratch_db_name,
    site_sla,
    sla_met,
    sla_misses,
)
from maintainer.errors import BadInput
from maintainer.inventory import Site

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
WEEK = timedelta(days=7)


def site(**vars_: object) -> Site:
    return Site(name="shop", vars=dict(vars_), groups=[])


def test_the_gap_to_now_starts_when_the_newest_backup_started():
    """The recovery point is the backup's start (the dump is taken then), not its finish."""
    starts = [NOW - 48 * H, NOW - 24 * H, NOW - 3 * H]
    assert max_gap(starts, NOW, WEEK) == 24 * 3600  # 48h -> 24h ago
    assert max_gap([NOW - 10 * H], NOW, WEEK) == 10 * 3600


def test_the_largest_gap_between_backups_counts():
    starts = [NOW - 100 * H, NOW - 70 * H, NOW - 20 * H, NOW - 1 * H]
    assert max_gap(starts, NOW, WEEK) == 50 * 3600


def test_gaps_reaching_into_the_window_count_whole_and_older_ones_not_at_all():
    starts = [NOW - 30 * 24 * H, NOW - 2 * H]  # a month-old backup, then nothing until 2h ago
    assert max_gap(starts, NOW, WEEK) == (30 * 24 - 2) * 3600  # not capped at the window
    assert max_gap([NOW - 10 * 24 * H], NOW, WEEK) == 10 * 24 * 3600
    starts = [NOW - 30 * 24 * H, NOW - 20 * 24 * H, NOW - 5 * H]  # the 10-day gap ended before the window
    assert max_gap(starts, NOW, WEEK) == (20 * 24 - 5) * 3600
    assert max_gap([], NOW, WEEK) == WEEK.total_seconds()


def test_the_rpo_target_is_compared_with_the_larger_of_age_and_gap():
    """An old backup must not pass because the gap was capped (issue 4, item 4): one rule, shared."""
    assert rpo_exposure(10 * 86400, 7 * 86400) == 10 * 86400
    assert rpo_exposure(3600, 86400) == 86400
    assert rpo_exposure(None, 5.0) == 5.0 and rpo_exposure(None, None) is None
    assert sla_met(86400, rpo_exposure(10 * 86400, 7 * 86400)) is False
    assert sla_met(None, 5) is None and sla_met(5, None) is None and sla_met(5, 5) is True


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


# ------------------------------------------------------------------ pointing the copy at the scratch db


def test_wp_home_and_siteurl_defines_are_rewritten_in_any_quoting_style():
    config = (
        "<?php\ndefine('DB_NAME', 'live');\n"
        'define( "WP_HOME", "https://shop.example" );\n'
        "define('WP_SITEURL','https://shop.example/wp');\n"
    )
    for name in ("WP_HOME", "WP_SITEURL"):
        config, found = _set_define(config, name, "http://127.0.0.1:8080")
        assert found
    assert "shop.example" not in config
    assert config.count("'http://127.0.0.1:8080'") == 2
    assert _set_define("<?php define('WP_HOME', getenv('HOME_URL'));", "WP_HOME", "x") == (
        "<?php define('WP_HOME', getenv('HOME_URL'));",
        False,
    )  # expressions (getenv) are left alone: documented as out of scope


def test_drupal_settings_get_the_scratch_database_in_both_forms():
    settings = (
        "<?php\n$databases['default']['default'] = array (\n  'database' => 'live',\n"
        "  'username' => 'u',\n  'host' => 'db',\n  'port' => 3306,\n);\n"
        '$databases["default"]["default"]["database"] = "live";\n'
    )
    text, count = _set_array_key(settings, "database", "live_drill_abc123")
    assert count == 2 and "'live'" not in text and '"live"' not in text
    text, count = _set_array_key(text, "port", "3307")
    assert count == 1 and "'port' => '3307'" in text
    assert _set_array_key("<?php $x = 1;", "database", "y")[1] == 0


def test_joomla_configuration_gets_the_scratch_database_and_no_live_site():
    config = "<?php\nclass JConfig {\n\tpublic $db = 'live';\n\tpublic $live_site = 'https://x';\n}\n"
    text, count = _set_property(config, "db", "live_drill_abc123")
    assert count == 1 and "public $db = 'live_drill_abc123';" in text
    text, count = _set_property(text, "live_site", "")
    assert count == 1 and "public $live_site = '';" in text
    assert _set_property("var $dbtype = 'mysqli';", "db", "x")[1] == 0  # $dbtype is not $db


def test_config_rewrite_and_smoke_env_are_checked():
    settings = drill_settings(site(drill={
        "config_rewrite": [{"file": "config.php", "search": "'live'", "replace": "'{db}'"}],
        "smoke_env": {"APP_DB": "{db}"},
    }))  # fmt: skip
    assert settings.config_rewrite[0].file == "config.php" and settings.smoke_env == {"APP_DB": "{db}"}
    for bad, key in (
        (
            {"config_rewrite": [{"file": "../x.php", "search": "a", "replace": "b"}]},
            "drill.config_rewrite.0.file",
        ),
        (
            {"config_rewrite": [{"file": "x.php", "search": "", "replace": "b"}]},
            "drill.config_rewrite.0.search",
        ),
        ({"config_rewrite": [{"file": "x.php", "search": "a"}]}, "drill.config_rewrite.0.replace"),
        ({"smoke_env": {"BAD NAME": "x"}}, "drill.smoke_env"),
    ):
        with pytest.raises(BadInput) as caught:
            drill_settings(site(drill=bad))
        assert caught.value.key == key, caught.value


def test_hosts_that_only_serve_as_drill_hosts_are_found():
    sites = [
        Site(name="shop", vars={"backup": {"target": "file:///b"}, "drill_host": "drills01"}, groups=[]),
        Site(name="blog", vars={"backup": {"target": "file:///b"}, "drill_host": "drills01"}, groups=[]),
        Site(name="drills01", vars={}, groups=[]),
        Site(name="both", vars={"backup": {"target": "file:///b"}}, groups=[]),
        Site(name="lonely", vars={}, groups=[]),
        Site(name="uses-both", vars={"backup": {"target": "file:///b"}, "drill_host": "both"}, groups=[]),
    ]
    assert drill_only_hosts(sites) == {"drills01": ["shop", "blog"]}


def test_a_missing_pack_is_named_once_not_once_per_file():
    damaged = [f"f{i}.php: pack packs/ab/abc.tar.zst is missing from the store" for i in range(12)]
    damaged.append("g.php: sha256 mismatch")
    text = _grouped(damaged)
    assert text.count("packs/ab/abc.tar.zst") == 1
    assert "(12 files: f0.php, f1.php, f2.php and 9 more)" in text and "g.php: sha256 mismatch" in text


def test_the_stop_message_is_not_doubled_and_leftovers_show_in_the_summary():
    record = DrillRecord(backup="b", leftovers_removed=["scratch dir /x removed"])
    assert "removed leftovers of an earlier interrupted drill: scratch dir /x removed" in record.summary()
    assert record.record()["leftovers_removed"] == ["scratch dir /x removed"]
    record.smoke_skipped = "the copy's config would use the live database"
    assert "smoke test skipped (the copy's config would use the live database)" in record.summary()
