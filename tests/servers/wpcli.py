"""The WordPress of tests/servers/web.py, reachable through a WP-CLI stand-in.

WP-CLI is not installable here, so the tests carry ``tests/fixtures/wp-cli/wp`` (never shipped): a
PHP script that performs the subset of WP-CLI maintainer calls through the real install's own PHP
APIs and prints what WP-CLI documents (see its header).

- ``wp_checksums`` (session scope): the checksums WP-CLI would download, computed offline from
  Debian's pristine package files in /usr/share/wordpress, which the test site is a copy of: md5
  per core file for the package's version and locale (the api.wordpress.org/core/checksums
  shape) and md5 + sha256 per file of each bundled plugin for its version (the
  downloads.wordpress.org/plugin-checksums shape). Upstream's own checksums would not match:
  Debian's package is not byte for byte the upstream release.
- ``wp_site`` (per test): a private copy of the session's installed WordPress docroot (the same
  database; ``wordpress_site`` installs it once, this does not install again) that a test may
  change, and a private copy of the stand-in with its checksums.json beside it.

The update fixtures (``wp_update_site`` and its session parts: a WordPress with updates waiting
and a local update source) live in tests/servers/wp_updates.py and are registered from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.web import WORDPRESS, WordPressSite

STANDIN = Path(__file__).resolve().parent.parent / "fixtures" / "wp-cli" / "wp"


def _digests(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


def _files(top: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of every file under ``top``, following symlinks as ``cp -rL`` does."""
    for root, _dirs, names in os.walk(top, followlinks=True):
        for name in names:
            path = Path(root) / name
            if path.is_file():
                yield path.relative_to(top).as_posix(), path


def _header_version(text: str) -> str | None:
    match = re.search(r"^[ \t/*#@]*Version:\s*(\S+)", text, re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else None


def checksum_manifest(package: Path = WORDPRESS) -> dict[str, Any]:
    """What WordPress.org's checksum APIs would answer for Debian's package, offline."""
    version_php = (package / "wp-includes" / "version.php").read_text()
    version = re.search(r"\$wp_version = '([^']+)'", version_php)
    assert version, "no $wp_version in version.php"
    core = {
        rel: _digests(path)[0]
        for rel, path in _files(package)
        if rel not in ("wp-config.php", ".htaccess")  # the site's own, not part of a release
    }
    plugins: dict[str, dict[str, Any]] = {}
    plugin_root = package / "wp-content" / "plugins"
    for directory in sorted(p for p in plugin_root.iterdir() if p.is_dir()):
        main = [p for p in directory.glob("*.php") if _header_version(p.read_text(errors="replace"))]
        if not main:
            continue
        plugin_version = _header_version(main[0].read_text(errors="replace"))
        assert plugin_version
        files = {}
        for rel, path in _files(directory):
            md5, sha256 = _digests(path)
            files[rel] = {"md5": md5, "sha256": sha256}
        plugins[directory.name] = {plugin_version: files}
    return {"core": {version.group(1): {"en_US": core}}, "plugins": plugins}


@dataclass(frozen=True)
class WpCliSite:
    """A private copy of the test WordPress, and the WP-CLI stand-in that serves it."""

    docroot: Path
    wp_cli: Path
    installed: WordPressSite

    def site_vars(self, **extra: Any) -> dict[str, Any]:
        """Inventory vars of this site (local): cms, docroot, wp_cli, php_bin, wp_cli_args."""
        values: dict[str, Any] = {
            "ansible_connection": "local",
            "cms": "wordpress",
            "docroot": str(self.docroot),
            "wp_cli": str(self.wp_cli),
        }
        if os.geteuid() == 0:
            values["wp_cli_args"] = ["--allow-root"]  # WP-CLI refuses root without it (so does the stand-in)
        values.update(extra)
        return values

    def wp(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the stand-in directly."""
        extra = ["--allow-root"] if os.geteuid() == 0 else []
        return subprocess.run(
            [str(self.wp_cli), f"--path={self.docroot}", *extra, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def add_plugin(self, slug: str, version: str, name: str | None = None) -> Path:
        """A small plugin in its own directory (not on WordPress.org: it has no published checksums)."""
        directory = self.docroot / "wp-content" / "plugins" / slug
        directory.mkdir()
        main = directory / f"{slug}.php"
        main.write_text(
            f"<?php\n/**\n * Plugin Name: {name or slug.replace('-', ' ').title()}\n * Version: {version}\n */\n"
        )
        (directory / "readme.txt").write_text(f"=== {slug} ===\nStable tag: {version}\n")
        return directory


@pytest.fixture(scope="session")
def wp_checksums() -> dict[str, Any]:
    if not WORDPRESS.is_dir():
        pytest.skip("wordpress is installed by .ci/run")
    return checksum_manifest()


@pytest.fixture
def wp_site(tmp_path: Path, wordpress_site: WordPressSite, wp_checksums: dict[str, Any]) -> WpCliSite:
    docroot = tmp_path / "site"
    subprocess.run(["cp", "-a", str(wordpress_site.docroot), str(docroot)], check=True)
    tools = tmp_path / "wp-cli"
    tools.mkdir()
    shutil.copy2(STANDIN, tools / "wp")
    (tools / "checksums.json").write_text(json.dumps(wp_checksums))
    return WpCliSite(docroot, tools / "wp", wordpress_site)


# registered with this module's fixtures (tests/conftest.py lists this module)
from tests.servers.wp_updates import wp_update_base, wp_update_packages, wp_update_site  # noqa: E402,F401
