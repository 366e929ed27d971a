"""A real nginx + PHP-FPM serving a throwaway WordPress, on loopback ports (see ENV.md).

``wordpress_site`` (session scope) copies Debian's WordPress into a temp
docroot, gives it its own database and user on the throwaway MariaDB
(``mariadb_server``), and installs it through PHP with the twentytwentythree
theme. ``web_server`` (per test) starts Debian's ``nginx`` and ``php-fpm8.2``
as ordinary background processes with their own configs, pid files and logs in
a temp dir: nginx on a free port of 127.0.0.1 passing PHP to the pool on
another free port. These are the configs a perf-tune run rewrites, so every
test starts from the same untuned ones. The system services are never touched;
both servers are stopped by their own PIDs.

The PHP-FPM master reads Debian's php.ini and ``conf.d`` plus the fixture's own
``conf.d`` (``PHP_INI_SCAN_DIR``), where a tuned OPcache ini goes. WordPress
runs with ``DISABLE_WP_CRON`` (no loopback request per page) and takes its
home URL from the request's Host, so it answers on any port without redirects.
"""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.mariadb import MariaDBDatabase, MariaDBServer, sql_ident, sql_string
from tests.servers.sshd import free_port

NGINX = "/usr/sbin/nginx"
WORDPRESS = Path("/usr/share/wordpress")
THEME = "twentytwentythree"
BLOG_TITLE = "Perf Test Blog"
START_TIMEOUT = 15.0
#: who the PHP workers and nginx workers run as (Debian's web user)
WEB_USER = "www-data"


def php_fpm_binary() -> str | None:
    """Debian names the binary after the PHP version (``/usr/sbin/php-fpm8.2``); the newest one."""
    found = glob.glob("/usr/sbin/php-fpm[0-9]*")
    if not found:
        return None
    return max(found, key=lambda p: [int(n) for n in re.findall(r"\d+", Path(p).name)])


def php_version(php_fpm: str) -> str:
    """``8.2`` from ``/usr/sbin/php-fpm8.2``."""
    return Path(php_fpm).name.removeprefix("php-fpm")


def _php_string(value: str) -> str:
    """A PHP single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ----------------------------------------------------------------- WordPress


@dataclass(frozen=True)
class WordPressSite:
    docroot: Path
    db: MariaDBDatabase
    title: str = BLOG_TITLE


def _wp_config(db: MariaDBDatabase) -> str:
    salts = "\n".join(
        f"define({_php_string(name)}, {_php_string(secrets.token_hex(24))});"
        for name in (
            "AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY",
            "AUTH_SALT", "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT",
        )
    )  # fmt: skip
    return f"""<?php
define('DB_NAME', {_php_string(db.name)});
define('DB_USER', {_php_string(db.user)});
define('DB_PASSWORD', {_php_string(db.password)});
define('DB_HOST', {_php_string(f"{db.host}:{db.port}")});
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
{salts}
$table_prefix = 'wp_';
// the site answers on whatever port the test server has
$maintainer_host = isset($_SERVER['HTTP_HOST']) ? $_SERVER['HTTP_HOST'] : 'localhost';
define('WP_HOME', 'http://' . $maintainer_host);
define('WP_SITEURL', 'http://' . $maintainer_host);
define('FS_METHOD', 'direct');
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_DEBUG', false);
if (!defined('ABSPATH')) {{
    define('ABSPATH', __DIR__ . '/');
}}
require_once ABSPATH . 'wp-settings.php';
"""


_INSTALLER = """<?php
define('WP_INSTALLING', true);
$_SERVER['HTTP_HOST'] = 'localhost';
function wp_new_blog_notification($blog_title, $blog_url, $user_id, $password) {}
require_once $argv[1] . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
$result = wp_install($argv[2], 'admin', 'admin@example.test', true, '', 'admin-password');
if (is_wp_error($result)) { fwrite(STDERR, $result->get_error_message()); exit(1); }
switch_theme($argv[3]);
echo "installed\\n";
"""


#: a page beside WordPress that says which PHP settings the serving workers run with
PROBE = "mt-probe.php"
_PROBE = """<?php
header('Content-Type: application/json');
echo json_encode([
    'pid' => getmypid(),
    'opcache_enable' => ini_get('opcache.enable'),
    'opcache_interned_strings_buffer' => ini_get('opcache.interned_strings_buffer'),
    'opcache_memory_consumption' => ini_get('opcache.memory_consumption'),
    'auto_prepend_file' => ini_get('auto_prepend_file'),
]);
"""


def install_wordpress(docroot: Path, db: MariaDBDatabase, title: str = BLOG_TITLE) -> WordPressSite:
    """Debian's WordPress copied into ``docroot`` and installed into ``db`` (about 1 s)."""
    subprocess.run(["cp", "-rL", str(WORDPRESS), str(docroot)], check=True, capture_output=True)
    for name in ("wp-config.php", ".htaccess"):
        (docroot / name).unlink(missing_ok=True)
    (docroot / "wp-config.php").write_text(_wp_config(db))
    installer = docroot.parent / "install-wordpress.php"
    installer.write_text(_INSTALLER)
    result = subprocess.run(
        ["php", str(installer), str(docroot), title, THEME], capture_output=True, text=True, timeout=120
    )
    installer.unlink()
    if result.returncode != 0 or "installed" not in result.stdout:
        raise RuntimeError(
            f"WordPress install failed (rc {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    (docroot / PROBE).write_text(_PROBE)
    return WordPressSite(docroot, db, title)


@contextmanager
def site_database(server: MariaDBServer) -> Iterator[MariaDBDatabase]:
    """A database and user of its own (like ``mariadb_db``, for a longer-lived site); dropped after."""
    token = secrets.token_hex(4)
    name, user = f"wp_{token}", f"wpu_{token}"
    password = f"pw-{secrets.token_hex(8)} 'q\" $x \\"
    server.sql(
        f"CREATE DATABASE {sql_ident(name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
        f"CREATE USER {sql_string(user)}@'%' IDENTIFIED BY {sql_string(password)};\n"
        f"GRANT ALL PRIVILEGES ON {sql_ident(name)}.* TO {sql_string(user)}@'%';\n"
    )
    try:
        yield MariaDBDatabase(server, name, user, password)
    finally:
        server.sql(f"DROP DATABASE IF EXISTS {sql_ident(name)};\nDROP USER IF EXISTS {sql_string(user)}@'%';")


@pytest.fixture(scope="session")
def wordpress_site(mariadb_server: MariaDBServer) -> Iterator[WordPressSite]:
    if not WORDPRESS.is_dir() or shutil.which("php") is None:
        pytest.skip("wordpress and php-cli are installed by .ci/run")
    # not pytest's tmp_path (root-only 0700): the web server's workers run as www-data
    workdir = Path(tempfile.mkdtemp(prefix="maintainer-wordpress-"))
    workdir.chmod(0o755)
    try:
        with site_database(mariadb_server) as db:
            yield install_wordpress(workdir / "site", db)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------- nginx + php-fpm


@dataclass(frozen=True)
class WebServer:
    """nginx on ``port`` in front of a PHP-FPM pool on ``fpm_port``; every file in ``workdir``."""

    workdir: Path
    port: int
    fpm_port: int
    site: WordPressSite
    php_fpm: str
    nginx_pid: int
    fpm_pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def etc(self) -> Path:
        """The nginx config dir: nginx.conf, mime.types, conf.d/, sites-enabled/, modules-enabled/."""
        return self.workdir / "nginx"

    @property
    def nginx_conf(self) -> Path:
        return self.etc / "nginx.conf"

    @property
    def pool_file(self) -> Path:
        return self.workdir / "php-fpm" / "pool.d" / "site.conf"

    @property
    def php_conf_d(self) -> Path:
        """Scanned by the PHP-FPM master after Debian's conf.d: where the OPcache ini goes."""
        return self.workdir / "php-fpm" / "conf.d"

    @property
    def mariadb_cnf(self) -> Path:
        """Where a tuned MariaDB config goes (checked, not loaded: the test server is shared)."""
        return self.workdir / "mariadb" / "90-maintainer-perf.cnf"

    def site_vars(self, **extra: Any) -> dict[str, Any]:
        """Inventory vars of this site for the perf-tune runbook (a local site)."""
        nginx = f"{NGINX} -c {self.nginx_conf}"
        values: dict[str, Any] = {
            "ansible_connection": "local",
            "site_url": self.url,
            "cms": "wordpress",
            "docroot": str(self.site.docroot),
            "health_marker": self.site.title,
            "nginx_conf": str(self.nginx_conf),
            "nginx_etc": str(self.etc),
            "nginx_pid": str(self.workdir / "nginx.pid"),
            "nginx_error_log": str(self.workdir / "nginx-error.log"),
            "nginx_access_log": "off",
            "nginx_reload_command": f"{nginx} -s reload",
            "php_fpm_bin": self.php_fpm,
            "php_fpm_pool": "site",
            "php_fpm_pool_file": str(self.pool_file),
            "php_fpm_listen": f"127.0.0.1:{self.fpm_port}",
            "php_fpm_user": WEB_USER,
            "php_fpm_reload_command": f"kill -USR2 $(cat {self.workdir / 'php-fpm.pid'})",
            "php_opcache_ini": str(self.php_conf_d / "90-maintainer-opcache.ini"),
            "mariadb_cnf": str(self.mariadb_cnf),
            "mariadb_datadir": str(self.site.db.server.workdir / "data"),
            "db": self.site.db.settings(),
        }
        values.update(extra)
        return values

    def get(self, path: str = "/", timeout: float = 10) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def php_settings(self) -> dict[str, Any]:
        """What the serving PHP-FPM workers run with (the probe page beside WordPress)."""
        status, body = self.get(f"/{PROBE}")
        if status != 200:
            raise AssertionError(f"the probe page answered {status}: {body[:300]}")
        return dict(json.loads(body))


_NGINX_CONF = """\
# the fixture's untuned nginx.conf (a perf-tune run replaces it)
user {user};
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{
    worker_connections 256;
}}
http {{
    include {etc}/mime.types;
    default_type application/octet-stream;
    access_log off;
    keepalive_timeout 5;
    include {etc}/conf.d/*.conf;
    include {etc}/sites-enabled/*;
}}
"""

_NGINX_TEMP = """\
# temp paths of this test server (not /var/lib/nginx)
client_body_temp_path {workdir}/tmp/body;
fastcgi_temp_path {workdir}/tmp/fastcgi;
proxy_temp_path {workdir}/tmp/proxy;
scgi_temp_path {workdir}/tmp/scgi;
uwsgi_temp_path {workdir}/tmp/uwsgi;
"""

_NGINX_SITE = """\
server {{
    listen 127.0.0.1:{port};
    server_name _;
    root {docroot};
    index index.php;
    location / {{
        try_files $uri $uri/ /index.php?$args;
    }}
    location ~ \\.php$ {{
        try_files $uri =404;
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_pass 127.0.0.1:{fpm_port};
    }}
}}
"""

_FPM_CONF = """\
[global]
pid = {workdir}/php-fpm.pid
error_log = {workdir}/php-fpm.log
; a graceful reload lets running requests finish
process_control_timeout = 10s
include = {workdir}/php-fpm/pool.d/*.conf
"""

_POOL = """\
; the fixture's untuned pool (a perf-tune run replaces it)
[site]
user = {user}
group = {user}
listen = 127.0.0.1:{fpm_port}
pm = dynamic
pm.max_children = 5
pm.start_servers = 2
pm.min_spare_servers = 1
pm.max_spare_servers = 3
"""


def _wait_serving(server: WebServer, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last = ""
    while True:
        for proc in procs:
            if proc.poll() is not None:
                logs = "".join(
                    p.read_text(errors="replace")
                    for p in (server.workdir / "nginx-error.log", server.workdir / "php-fpm.log")
                    if p.exists()
                )
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{logs}")
        try:
            status, body = server.get(timeout=5)
            if status == 200 and server.site.title in body:
                return
            last = f"HTTP {status}: {body[:500]}"
        except OSError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the test site did not serve its home page: {last}")
        time.sleep(0.05)


def _write_configs(workdir: Path, site: WordPressSite) -> tuple[int, int]:
    """The untuned configs of a test server in ``workdir``: (nginx port, PHP-FPM port)."""
    workdir.chmod(0o755)
    port, fpm_port = free_port(), free_port()
    while fpm_port == port:
        fpm_port = free_port()
    etc = workdir / "nginx"
    for sub in ("conf.d", "sites-enabled", "modules-enabled"):
        (etc / sub).mkdir(parents=True)
    for sub in ("body", "fastcgi", "proxy", "scgi", "uwsgi"):
        (workdir / "tmp" / sub).mkdir(parents=True)
        shutil.chown(workdir / "tmp" / sub, WEB_USER)
    for sub in ("pool.d", "conf.d"):
        (workdir / "php-fpm" / sub).mkdir(parents=True)
    (workdir / "mariadb").mkdir()
    fields = {
        "workdir": workdir, "etc": etc, "port": port, "fpm_port": fpm_port,
        "docroot": site.docroot, "user": WEB_USER,
    }  # fmt: skip
    shutil.copy("/etc/nginx/mime.types", etc / "mime.types")
    (etc / "nginx.conf").write_text(_NGINX_CONF.format(**fields))
    (etc / "conf.d" / "temp-paths.conf").write_text(_NGINX_TEMP.format(**fields))
    (etc / "sites-enabled" / "site.conf").write_text(_NGINX_SITE.format(**fields))
    (workdir / "php-fpm" / "php-fpm.conf").write_text(_FPM_CONF.format(**fields))
    (workdir / "php-fpm" / "pool.d" / "site.conf").write_text(_POOL.format(**fields))
    return port, fpm_port


@contextmanager
def running_web_server(site: WordPressSite) -> Iterator[WebServer]:
    """Start nginx + PHP-FPM for ``site`` with fresh, untuned configs; stopped and removed on exit."""
    php_fpm = php_fpm_binary()
    if php_fpm is None:
        raise RuntimeError("php-fpm is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="maintainer-web-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port, fpm_port = _write_configs(workdir, site)
        version = php_version(php_fpm)
        env = {
            **os.environ,
            "PHP_INI_SCAN_DIR": f"/etc/php/{version}/fpm/conf.d:{workdir / 'php-fpm' / 'conf.d'}",
        }
        with (workdir / "php-fpm.out").open("wb") as out:  # files, not pipes: a full pipe blocks a server
            procs.append(
                subprocess.Popen(
                    [php_fpm, "--nodaemonize", "--fpm-config", str(workdir / "php-fpm" / "php-fpm.conf")],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=env,
                )
            )
        with (workdir / "nginx.out").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [NGINX, "-c", str(workdir / "nginx" / "nginx.conf"), "-g", "daemon off;"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        server = WebServer(
            workdir, port, fpm_port, site, php_fpm, nginx_pid=procs[1].pid, fpm_pid=procs[0].pid
        )
        _wait_serving(server, procs)
        yield server
    finally:
        for proc in reversed(procs):
            proc.terminate()  # by its own PID: nginx and php-fpm masters stop their workers
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def web_server(request: pytest.FixtureRequest) -> Iterator[WebServer]:
    if not os.path.exists(NGINX) or php_fpm_binary() is None:
        pytest.skip("nginx and php-fpm are installed by .ci/run")
    if os.geteuid() != 0:
        pytest.skip("the web fixture needs root (workers run as www-data)")
    site: WordPressSite = request.getfixturevalue(
        "wordpress_site"
    )  # after the checks: no install for nothing
    with running_web_server(site) as server:
        yield server
