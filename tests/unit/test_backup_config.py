"""maintainer.backup.config: a site's backup vars become settings, or one BadInput naming site, key and fix."""

from __future__ import annotations

from typing import Any

import pytest

from maintainer.backup.config import BackupSettings, check_site_backup, site_backup
from maintainer.errors import BadInput, ExitCode

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def site(**variables: Any) -> Any:
    from maintainer.inventory import Site

    values: dict[str, Any] = {"docroot": "/var/www/shop", "backup": {"target": "file:///srv/backups"}}
    values.update(variables)
    return Site("shop", {k: v for k, v in values.items() if v is not None}, [])


def refused(**variables: Any) -> BadInput:
    with pytest.raises(BadInput) as caught:
        site_backup(site(**variables))
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    assert caught.value.message.startswith("site 'shop'"), caught.value.message
    return caught.value


def test_good_settings_are_read() -> None:
    spec = site_backup(
        site(
            backup={
                "target": "s3://acme-backups/sites",
                "exclude": ["cache"],
                "retention": {"keep_daily": 7},
                "s3": {"region": "eu-central-1", "storage_class": "standard_ia"},
            },
            db={"engine": "mariadb", "name": "shop", "user": "shop", "password": 1234},
        )
    )
    assert spec.site == "shop" and spec.docroot == "/var/www/shop"
    assert spec.settings.retention.keep_daily == 7
    assert spec.settings.s3 is not None and spec.settings.s3.storage_class == "STANDARD_IA"
    assert spec.db is not None and spec.db.password == "1234"


@pytest.mark.parametrize(
    ("backup", "key", "suggestion", "known"),
    [
        ({"retention": {"keep_dayly": 7}}, "backup.retention.keep_dayly", "keep_daily", "keep_within"),
        ({"s3": {"endpont_url": "http://minio:9000"}}, "backup.s3.endpont_url", "endpoint_url", "part_size"),
        ({"excludes": ["a"]}, "backup.excludes", "exclude", "one_file_system"),
    ],
)
def test_an_unknown_key_gets_the_keys_of_its_own_mapping_and_a_suggestion(
    backup: dict[str, Any], key: str, suggestion: str, known: str
) -> None:
    error = refused(backup={"target": "file:///srv/backups", **backup})
    assert error.key == key
    assert f"unknown key '{key}'" in error.message
    assert error.fix is not None and error.fix.startswith(f"did you mean '{suggestion}'? Use one of: ")
    assert known in error.fix
    if key != "backup.excludes":  # a nested mapping's keys, not backup's own
        assert "target" not in error.fix and "compression_level" not in error.fix


def test_an_unknown_db_key_gets_a_suggestion_too() -> None:
    error = refused(db={"engine": "mariadb", "name": "shop", "user": "shop", "passwort": "x"})
    assert error.key == "db.passwort"
    assert error.fix is not None and error.fix.startswith("did you mean 'password'? Use one of: ")
    assert "dump_options" in error.fix


def test_a_key_far_from_every_known_one_gets_the_list_only() -> None:
    error = refused(backup={"target": "file:///x", "retention": {"zzz": 1}})
    assert error.fix is not None and error.fix.startswith("Use one of: keep_daily, keep_hourly")


@pytest.mark.parametrize("value", ["file:///x", ["file:///x"], 3])
def test_backup_that_is_not_a_mapping_says_so(value: Any) -> None:
    error = refused(backup=value)
    assert error.key == "backup"
    assert f"'backup' must be a mapping, got {type(value).__name__}" in error.message
    assert "no backup target" not in error.message


def test_a_nested_value_that_is_not_a_mapping_says_so() -> None:
    error = refused(backup={"target": "file:///x", "s3": SECRET})
    assert error.key == "backup.s3"
    assert "'backup.s3' must be a mapping, got str" in error.message
    assert SECRET not in str(error)
    error = refused(backup={"target": "file:///x", "retention": ["keep_daily"]})
    assert "'backup.retention' must be a mapping, got list" in error.message


def test_no_backup_or_no_target_is_the_missing_target() -> None:
    for variables in ({"backup": None}, {"backup": {"exclude": []}}):
        error = refused(**variables)
        assert error.key == "backup.target" and "has no backup target" in error.message


@pytest.mark.parametrize(
    ("s3", "key"),
    [
        ({"access_key_id": "AKIAEXAMPLE"}, "backup.s3.secret_access_key"),
        ({"secret_access_key": SECRET}, "backup.s3.access_key_id"),
        ({"kms_key_id": "alias/x"}, "backup.s3.sse"),
        ({"profile": "p", "access_key_id": "AKIA", "secret_access_key": SECRET}, "backup.s3.profile"),
    ],
)
def test_errors_from_inside_the_s3_settings_name_the_site(s3: dict[str, Any], key: str) -> None:
    error = refused(backup={"target": "s3://acme-backups/sites", "s3": s3})
    assert error.key == key
    assert SECRET not in str(error)
    assert error.message.count("site 'shop'") == 1
    with pytest.raises(BadInput) as caught:  # the plan-time check says it the same way, once
        check_site_backup(site(backup={"target": "s3://acme-backups/sites", "s3": s3}))
    assert caught.value.message.count("site 'shop'") == 1


def test_value_errors_name_the_key_and_never_show_the_value() -> None:
    error = refused(backup={"target": "file:///x", "compression_level": 30})
    assert error.key == "backup.compression_level" and "less than or equal to 19" in error.message
    error = refused(db={"engine": "mariadb", "name": "shop", "user": "shop", "password": SECRET, "port": "x"})
    assert error.key == "db.port" and SECRET not in str(error)
    error = refused(db={"engine": "mariadb", "name": "shop"})
    assert error.key == "db.user" and "'db.user' is required" in error.message


def test_db_that_is_not_a_mapping_says_so() -> None:
    error = refused(db="mysql://shop@localhost/shop")
    assert error.key == "db" and "'db' must be a mapping, got str" in error.message


def test_the_model_keys_listed_are_the_real_ones() -> None:
    error = refused(backup={"target": "file:///x", "excludes": []})
    assert error.fix is not None
    assert all(name in error.fix for name in BackupSettings.model_fields)


def test_backup_root_backs_up_the_project_around_the_docroot() -> None:
    # a Drupal Composer project: composer.lock and vendor/ beside web/, which an update's rollback needs
    spec = site_backup(
        site(docroot="/var/www/shop/web", backup={"target": "file:///srv/b", "root": "/var/www/shop/"})
    )
    assert (spec.docroot, spec.web_root, spec.web_subdir()) == ("/var/www/shop", "/var/www/shop/web", "web")
    plain = site_backup(site())
    assert (plain.docroot, plain.web_root, plain.web_subdir()) == ("/var/www/shop", "/var/www/shop", "")


@pytest.mark.parametrize("root", ["/var/www/other", "var/www/shop", "/var/www/shop/web/sub"])
def test_a_backup_root_that_does_not_hold_the_docroot_is_bad_input(root: str) -> None:
    error = refused(docroot="/var/www/shop/web", backup={"target": "file:///srv/b", "root": root})
    assert error.key == "backup.root" and "holds the docroot" in error.message
