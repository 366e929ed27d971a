"""A WordPress with updates waiting, a local update source, and the WP-CLI stand-in (issue 5).

WordPress asks api.wordpress.org what is newer and downloads zips from downloads.wordpress.org;
here a real HTTP server on a loopback port (``UpdatePackages``) serves test plugins, a theme and
a core release in two or more versions, and each test gets its own ``index.json`` on it
(``UpdateSource``: what the API would answer, edited by the test with ``publish()``). The stand-in
(tests/fixtures/wp-cli/wp) fills WordPress's ``update_core``/``update_plugins``/``update_themes``
transients from that index, so WordPress's own Core_Upgrader / Plugin_Upgrader / Theme_Upgrader
run the real download-unpack-replace path.

What is installed (``UPDATE_SITE``) and what the source offers (``RELEASES``):

- ``good-plugin`` 1.0 -> 1.1 (1.2 built, published by a test that needs "newer than planned");
- ``other-plugin`` 2.0 -> 2.1;
- ``broken-plugin`` 1.0 -> 1.1, whose 1.1 calls an undefined function when WordPress loads it: the
  front end answers 500 with WordPress's "critical error" page (the white screen), while WP-CLI
  with ``--skip-plugins`` still works;
- ``pinned-plugin`` 1.0 -> 1.1 (for exclusions);
- ``addon-plugin`` 1.0 -> 1.1, with the WordPress 6.5 header ``Requires Plugins: good-plugin``;
- ``future-plugin`` 1.0 -> 2.0, whose 2.0 requires WordPress 9.9 and PHP 99.0 (held back);
- theme ``mt-theme`` 1.0 -> 1.1 (installed, not active: twentytwentythree stays the face);
- core: Debian's package with ``$wp_version`` bumped by one patch level (6.1.9 -> 6.1.10), a
  "minor" update in WordPress's sense.

All plugins are active. Fixtures:

- ``wp_update_packages`` (session): builds the zips once and serves them;
- ``wp_update_base`` (session): the installed site's files and a SQL dump of its database, built
  once from ``wordpress_site`` (its own database: the shared one is never written);
- ``wp_update_site`` (per test): a private copy of the files, its OWN database loaded from the
  dump (so a test may update, break and roll back in any order), a private copy of the stand-in
  with ``update-source.json`` and ``checksums.json`` beside it, a fresh ``UpdateSource``, and the
  site served by PHP's built-in server (``url``, ``get()``) with its PHP error log in
  ``error_log``. ``update_site()`` builds the same in a given directory for a given owner (the
  sshd fixture's user, for tests over SSH).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers.mariadb import MariaDBDatabase, MariaDBServer
from tests.servers.sshd import free_port
from tests.servers.web import WORDPRESS, WordPressSite, _wp_config, site_database
from tests.servers.wpcli import STANDIN, WpCliSite

START_TIMEOUT = 15.0
THEME = "mt-theme"


@dataclass(frozen=True)
class Release:
    """One release of a test plugin/theme/core in the source."""

    kind: str  # plugins, themes, core
    slug: str
    version: str
    requires: str | None = "5.0"
    requires_php: str | None = "7.0"

    @property
    def filename(self) -> str:
        return f"{self.slug}.{self.version}.zip"


def _plugin_title(slug: str) -> str:
    return slug.replace("-", " ").title()


#: what the site has installed: (kind, slug) -> version
UPDATE_SITE: dict[tuple[str, str], str] = {
    ("plugins", "good-plugin"): "1.0",
    ("plugins", "other-plugin"): "2.0",
    ("plugins", "broken-plugin"): "1.0",
    ("plugins", "pinned-plugin"): "1.0",
    ("plugins", "addon-plugin"): "1.0",
    ("plugins", "future-plugin"): "1.0",
    ("themes", THEME): "1.0",
}

#: every package the server has; ``published`` ones are in a new source's index
RELEASES: list[tuple[Release, bool]] = [
    *[(Release("plugins", "good-plugin", v), v != "1.2") for v in ("1.0", "1.1", "1.2")],
    *[(Release("plugins", "other-plugin", v), True) for v in ("2.0", "2.1")],
    *[(Release("plugins", "broken-plugin", v), True) for v in ("1.0", "1.1")],
    *[(Release("plugins", "pinned-plugin", v), True) for v in ("1.0", "1.1")],
    *[(Release("plugins", "addon-plugin", v), True) for v in ("1.0", "1.1")],
    (Release("plugins", "future-plugin", "1.0"), True),
    (Release("plugins", "future-plugin", "2.0", requires="9.9", requires_php="99.0"), True),
    *[(Release("themes", THEME, v), True) for v in ("1.0", "1.1")],
]

#: the function broken-plugin 1.1 calls and nobody defines
BROKEN_CALL = "mt_broken_plugin_undefined_function"


def plugin_source(release: Release) -> str:
    headers = [
        f"Plugin Name: {_plugin_title(release.slug)}",
        f"Version: {release.version}",
        f"Requires at least: {release.requires}" if release.requires else "",
        f"Requires PHP: {release.requires_php}" if release.requires_php else "",
        "Requires Plugins: good-plugin" if release.slug == "addon-plugin" else "",
    ]
    body = f"define('MT_{release.slug.upper().replace('-', '_')}_VERSION', '{release.version}');\n"
    if release.slug == "broken-plugin" and release.version != "1.0":
        body += f"{BROKEN_CALL}();  // a fatal error on every page that loads plugins\n"
    header = "\n".join(f" * {line}" for line in headers if line)
    return f"<?php\n/**\n{header}\n */\n{body}"


def theme_files(release: Release) -> dict[str, str]:
    style = (
        f"/*\nTheme Name: MT Theme\nVersion: {release.version}\nRequires at least: {release.requires}\n"
        f"Requires PHP: {release.requires_php}\n*/\n"
    )
    return {"style.css": style, "index.php": "<?php bloginfo('name');\n"}


def extension_files(release: Release) -> dict[str, str]:
    """Files of a plugin/theme release, relative to its directory."""
    if release.kind == "themes":
        return theme_files(release)
    return {f"{release.slug}.php": plugin_source(release), "readme.txt": f"Stable tag: {release.version}\n"}


def core_version(tree: Path) -> str:
    found = re.search(r"\$wp_version = '([^']+)'", (tree / "wp-includes" / "version.php").read_text())
    assert found, "no $wp_version"
    return found.group(1)


def next_patch(version: str) -> str:
    parts = version.split(".")
    if len(parts) == 2:
        parts.append("0")
    parts[-1] = str(int(parts[-1]) + 1)
    return ".".join(parts)


def _zip_tree(zip_path: Path, files: dict[str, bytes | Path]) -> None:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as archive:  # stored: fast, local anyway
        for name, content in sorted(files.items()):
            if isinstance(content, Path):
                archive.write(content, name)
            else:
                archive.writestr(name, content)


def build_core_zip(zip_path: Path, package: Path = WORDPRESS) -> str:
    """Debian's WordPress as a release zip (``wordpress/...``) one patch level up; its version."""
    version = next_patch(core_version(package))
    files: dict[str, bytes | Path] = {}
    for root, dirs, names in os.walk(package, followlinks=True):
        rel_root = Path(root).relative_to(package)
        # like a "no-content" package: bundled plugins and themes are not replaced by a core update
        if rel_root.parts[:2] in (("wp-content", "plugins"), ("wp-content", "themes")):
            dirs[:] = []
            continue
        for name in names:
            rel = (rel_root / name).as_posix()
            if rel in ("wp-config.php", ".htaccess"):
                continue
            path = Path(root) / name
            if path.is_file():
                files[f"wordpress/{rel}"] = path
    version_php = (package / "wp-includes" / "version.php").read_text()
    files["wordpress/wp-includes/version.php"] = re.sub(
        r"\$wp_version = '[^']+'", f"$wp_version = '{version}'", version_php
    ).encode()
    _zip_tree(zip_path, files)
    return version


# ----------------------------------------------------------------- the update source


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class UpdatePackages:
    """The HTTP server holding every package; sources (indexes) live under ``/sources/<id>/``."""

    root: Path
    port: int
    core_version: str
    core_from: str

    @property
    def base_url(self) -> str:
        # "localhost", not 127.0.0.1: WP_HTTP_BLOCK_EXTERNAL lets WordPress reach localhost only
        return f"http://localhost:{self.port}"

    def package_url(self, release: Release) -> str:
        if release.kind == "core":
            return f"{self.base_url}/pkg/core/wordpress-{release.version}.zip"
        return f"{self.base_url}/pkg/{release.kind}/{release.filename}"

    def new_source(self) -> UpdateSource:
        source = UpdateSource(self, f"s{secrets.token_hex(4)}")
        for release, published in RELEASES:
            if published:
                source.publish(release.kind, release.slug, release.version, write=False)
        source.publish("core", "wordpress", self.core_version, write=False)
        source.write()
        return source


@dataclass
class UpdateSource:
    """One test's view of "WordPress.org": which releases exist, as index.json."""

    packages: UpdatePackages
    name: str
    index: dict[str, Any] = field(default_factory=lambda: {"core": [], "plugins": {}, "themes": {}})

    @property
    def path(self) -> Path:
        return self.packages.root / "sources" / self.name / "index.json"

    @property
    def index_url(self) -> str:
        return f"{self.packages.base_url}/sources/{self.name}/index.json"

    def publish(self, kind: str, slug: str, version: str, *, write: bool = True) -> None:
        """Make a built release available (as a new release on WordPress.org would be)."""
        if kind == "core":
            release = Release("core", "wordpress", version)
            entry: dict[str, Any] = {"version": version, "package": self.packages.package_url(release)}
            self.index["core"].append(entry)
        else:
            release = next(r for r, _ in RELEASES if (r.kind, r.slug, r.version) == (kind, slug, version))
            entry = {
                "version": version,
                "package": self.packages.package_url(release),
                "requires": release.requires,
                "requires_php": release.requires_php,
                "tested": "6.1",
            }
            self.index[kind].setdefault(slug, []).append(entry)
        if write:
            self.write()

    def withdraw(self, kind: str, slug: str) -> None:
        """The source no longer offers anything for this slug (a plugin not on WordPress.org)."""
        if kind == "core":
            self.index["core"] = []
        else:
            self.index[kind].pop(slug, None)
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.index, indent=1))


@contextmanager
def running_update_packages() -> Iterator[UpdatePackages]:
    """Build every package in a temp dir and serve it on a free loopback port."""
    root = Path(tempfile.mkdtemp(prefix="maintainer-wp-updates-"))
    root.chmod(0o755)
    server: http.server.ThreadingHTTPServer | None = None
    try:
        for release, _ in RELEASES:
            directory = root / "pkg" / release.kind
            directory.mkdir(parents=True, exist_ok=True)
            files: dict[str, bytes | Path] = {
                f"{release.slug}/{name}": text.encode() for name, text in extension_files(release).items()
            }
            _zip_tree(directory / release.filename, files)
        (root / "pkg" / "core").mkdir(parents=True)
        core_from = core_version(WORDPRESS)
        tmp_zip = root / "pkg" / "core" / "building.zip"
        version = build_core_zip(tmp_zip)
        tmp_zip.rename(root / "pkg" / "core" / f"wordpress-{version}.zip")
        (root / "sources").mkdir()
        port = free_port()

        def handler(*args: Any, **kwargs: Any) -> _QuietHandler:
            return _QuietHandler(*args, directory=str(root), **kwargs)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="wp-update-source", daemon=True)
        thread.start()
        yield UpdatePackages(root, port, version, core_from)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------- the site


@dataclass(frozen=True)
class UpdateBase:
    """The installed site, once per session: its files and a dump of its database."""

    docroot: Path
    dump: bytes


_ACTIVATE = """<?php
$_SERVER['HTTP_HOST'] = 'localhost';
require $argv[1] . '/wp-load.php';
update_option('active_plugins', array_slice($argv, 2));
echo "activated\\n";
"""


def install_extensions(docroot: Path) -> None:
    """The installed versions of the test plugins and theme, into a docroot."""
    for (kind, slug), version in UPDATE_SITE.items():
        release = next(r for r, _ in RELEASES if (r.kind, r.slug, r.version) == (kind, slug, version))
        directory = docroot / "wp-content" / kind / slug
        directory.mkdir(parents=True)
        for name, text in extension_files(release).items():
            (directory / name).write_text(text)


def _sql_pipe(server: MariaDBServer, dump_args: list[str], load_db: str | None, data: bytes | None) -> bytes:
    if load_db is None:
        result = subprocess.run(
            ["mysqldump", "--no-defaults", f"--socket={server.socket}", "--user=root", *dump_args],
            capture_output=True,
            timeout=120,
        )
    else:
        result = subprocess.run(server.client_argv(load_db), input=data, capture_output=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"SQL copy failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def clone_database(server: MariaDBServer, dump: bytes, db: MariaDBDatabase) -> None:
    _sql_pipe(server, [], db.name, dump)


def _write_config(docroot: Path, db: MariaDBDatabase) -> None:
    (docroot / "wp-config.php").write_text(_wp_config(db))


@contextmanager
def build_update_base(installed: WordPressSite, server: MariaDBServer) -> Iterator[UpdateBase]:
    workdir = Path(tempfile.mkdtemp(prefix="maintainer-wp-update-base-"))
    try:
        docroot = workdir / "site"
        subprocess.run(["cp", "-a", str(installed.docroot), str(docroot)], check=True)
        install_extensions(docroot)
        with site_database(server) as db:
            clone_database(server, _sql_pipe(server, [installed.db.name], None, None), db)
            _write_config(docroot, db)
            plugins = [f"{slug}/{slug}.php" for (kind, slug) in UPDATE_SITE if kind == "plugins"]
            script = workdir / "activate.php"
            script.write_text(_ACTIVATE)
            result = subprocess.run(
                ["php", str(script), str(docroot), *plugins], capture_output=True, text=True, timeout=60
            )
            if result.returncode != 0 or "activated" not in result.stdout:
                raise RuntimeError(f"activating the test plugins failed:\n{result.stdout}{result.stderr}")
            dump = _sql_pipe(server, ["--single-transaction", db.name], None, None)
        (docroot / "wp-config.php").unlink()
        yield UpdateBase(docroot, dump)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class WpUpdateSite(WpCliSite):
    """A private WordPress with updates waiting: files, database, stand-in, source, web server."""

    db: MariaDBDatabase
    source: UpdateSource
    url: str
    error_log: Path
    #: the sshd fixture's vars when the site is reached over SSH (None: local)
    ssh_vars: dict[str, Any] | None = None

    def site_vars(self, **extra: Any) -> dict[str, Any]:
        """Inventory vars: cms, docroot, wp_cli, site_url, db, php_error_log (+ how to reach it)."""
        values: dict[str, Any] = {
            "cms": "wordpress",
            "docroot": str(self.docroot),
            "wp_cli": str(self.wp_cli),
            "site_url": self.url,
            "health_marker": self.installed.title,
            "php_error_log": str(self.error_log),
            "db": self.db.settings(),
        }
        if self.ssh_vars is not None:
            values.update(self.ssh_vars)
        else:
            values["ansible_connection"] = "local"
            if os.geteuid() == 0:
                values["wp_cli_args"] = ["--allow-root"]
        values.update(extra)
        return values

    def get(self, path: str = "/", timeout: float = 20) -> tuple[int, str]:
        """A GET of the served site: (status, body)."""
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def version_of(self, kind: str, slug: str) -> str | None:
        """The installed version, read by the stand-in (``kind``: plugin, theme, core)."""
        if kind == "core":
            return self.wp("core", "version").stdout.strip() or None
        listed = json.loads(self.wp(kind, "list", "--format=json", "--skip-update-check").stdout)
        return next((str(i["version"]) for i in listed if i["name"] == slug), None)


def _wait_serving(site: WpUpdateSite, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last = ""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"php -S exited with {proc.returncode}")
        try:
            status, body = site.get(timeout=5)
            if status == 200 and site.installed.title in body:
                return
            last = f"HTTP {status}: {body[:300]}"
        except OSError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the update test site did not serve its home page: {last}")
        time.sleep(0.05)


@contextmanager
def update_site(
    base: UpdateBase,
    packages: UpdatePackages,
    server: MariaDBServer,
    checksums: dict[str, Any],
    directory: Path,
    *,
    owner: str | None = None,
    ssh_vars: dict[str, Any] | None = None,
) -> Iterator[WpUpdateSite]:
    """A private update site in ``directory`` (files owned by ``owner`` when given)."""
    docroot = directory / "site"
    tools = directory / "wp-cli"
    subprocess.run(["cp", "-a", str(base.docroot), str(docroot)], check=True)
    tools.mkdir()
    shutil.copy2(STANDIN, tools / "wp")
    (tools / "checksums.json").write_text(json.dumps(checksums))
    source = packages.new_source()
    (tools / "update-source.json").write_text(json.dumps({"index": source.index_url}))
    error_log = directory / "php-error.log"
    proc: subprocess.Popen[bytes] | None = None
    with site_database(server) as db:
        try:
            clone_database(server, base.dump, db)
            _write_config(docroot, db)
            error_log.touch()
            if owner is not None:
                subprocess.run(["chown", "-R", f"{owner}:{owner}", str(docroot), str(tools), str(error_log)])
            port = free_port()
            with (directory / "php-server.out").open("wb") as out:  # a file: a full pipe blocks the server
                proc = subprocess.Popen(
                    [
                        "php", "-S", f"127.0.0.1:{port}", "-t", str(docroot),
                        "-d", "log_errors=1", "-d", f"error_log={error_log}", "-d", "display_errors=0",
                        # no OPcache: its 2 s revalidation (and zip entries' equal mtimes) would serve
                        # the replaced plugin's old code for a while after an update or a rollback
                        "-d", "opcache.enable=0",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )  # fmt: skip
            site = WpUpdateSite(
                docroot,
                tools / "wp",
                WordPressSite(docroot, db),
                db,
                source,
                f"http://127.0.0.1:{port}/",
                error_log,
                ssh_vars,
            )
            _wait_serving(site, proc)
            yield site
        finally:
            if proc is not None:
                proc.terminate()  # by its own PID (no workers: one process)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            shutil.rmtree(source.path.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def wp_update_packages() -> Iterator[UpdatePackages]:
    if not WORDPRESS.is_dir() or shutil.which("php") is None:
        pytest.skip("wordpress and php-cli are installed by .ci/run")
    with running_update_packages() as packages:
        yield packages


@pytest.fixture(scope="session")
def wp_update_base(wordpress_site: WordPressSite, mariadb_server: MariaDBServer) -> Iterator[UpdateBase]:
    with build_update_base(wordpress_site, mariadb_server) as base:
        yield base


@pytest.fixture
def wp_update_site(
    wp_update_base: UpdateBase,
    wp_update_packages: UpdatePackages,
    mariadb_server: MariaDBServer,
    wp_checksums: dict[str, Any],
) -> Iterator[WpUpdateSite]:
    directory = Path(tempfile.mkdtemp(prefix="maintainer-wp-update-site-"))
    directory.chmod(0o755)
    try:
        with update_site(wp_update_base, wp_update_packages, mariadb_server, wp_checksums, directory) as site:
            yield site
    finally:
        shutil.rmtree(directory, ignore_errors=True)
