"""Facts a tuning is computed from, read on the site with one bash command (locally or over SSH).

Inventory vars that steer it (all optional): ``php_version`` (e.g. ``8.2``) or ``php_fpm_bin``
(default: the newest ``/usr/sbin/php-fpm*``), ``php_fpm_pool`` (whose workers are measured;
default: ``www``, Debian's default pool; ``*``: every pool), ``docroot`` (its PHP files size
OPcache), ``mariadb_datadir`` (default ``/var/lib/mysql``; its size sizes the buffer pool when
readable), ``nginx_bin``, ``mariadbd_bin``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import StepFailed

#: the pool measured when the inventory names none (Debian's and the README's default)
DEFAULT_POOL = "www"
#: argv after the script: php_fpm_bin php_version pool docroot datadir nginx_bin mariadbd_bin
_SCRIPT = r"""
php_fpm=$1 php_version=$2 pool=$3 docroot=$4 datadir=$5 nginx=$6 mariadbd=$7
PATH=$PATH:/usr/sbin:/sbin
echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
awk '$1 == "MemTotal:" {print "mem_total_kb=" $2}
     $1 == "MemAvailable:" {print "mem_available_kb=" $2}' /proc/meminfo
if [ -z "$php_fpm" ] && [ -n "$php_version" ]; then php_fpm=php-fpm$php_version; fi
if [ -z "$php_fpm" ]; then php_fpm=$(ls -1 /usr/sbin/php-fpm[0-9]* 2>/dev/null | sort -V | tail -n 1); fi
if [ -n "$php_fpm" ] && php_fpm=$(command -v "$php_fpm"); then
    echo "php_fpm_bin=$php_fpm"
    echo "php_version=$("$php_fpm" -n -v 2>/dev/null | head -n 1)"
fi
ps -ww -eo rss=,args= | awk -v pool="$pool" '
    { rss = $1; $1 = ""; sub(/^ +/, "") }
    /^php-fpm: pool / && (pool == "*" || $0 == "php-fpm: pool " pool) { n++; total += rss }
    END { print "php_workers=" n + 0; print "php_workers_rss_kb=" total + 0 }'
if nginx=$(command -v "$nginx"); then echo "nginx_version=$("$nginx" -v 2>&1 | head -n 1)"; fi
if mariadbd=$(command -v "$mariadbd"); then
    echo "mariadb_version=$("$mariadbd" --version 2>/dev/null | head -n 1)"
fi
if [ -n "$datadir" ] && [ -r "$datadir" ] && [ -x "$datadir" ]; then
    echo "mariadb_data_kb=$(du -sk "$datadir" 2>/dev/null | cut -f 1)"
fi
if [ -n "$docroot" ] && [ -d "$docroot" ]; then
    find "$docroot" -type f -name '*.php' -printf '%s\n' 2>/dev/null \
        | awk '{n++; s += $1} END {print "php_files=" n + 0; print "php_code_bytes=" s + 0}'
fi
"""


@dataclass(frozen=True)
class Facts:
    cpus: int
    mem_total_mb: int
    mem_available_mb: int
    php_fpm_bin: str | None = None
    php_version: str | None = None  # 8.2.36
    php_branch: str | None = None  # 8.2: Debian's paths and service names use it
    php_fpm_service: str | None = None  # php8.2-fpm
    php_pool: str | None = None  # the pool measured; None: every pool (php_fpm_pool: "*")
    php_workers: int = 0
    php_worker_avg_mb: float | None = None  # average RSS of the pool's workers
    nginx_version: str | None = None
    mariadb_version: str | None = None
    mariadb_data_mb: int | None = None
    docroot: str | None = None
    php_files: int | None = None
    php_code_mb: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Facts:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def summary(self) -> str:
        """One line: what the host has."""
        parts = [f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}", f"{self.mem_total_mb} MB RAM"]
        parts[-1] += f" ({self.mem_available_mb} MB available)"
        if self.php_version:
            workers = (
                f"{self.php_workers} worker{'s' if self.php_workers != 1 else ''}"
                f" of {self.php_worker_avg_mb:.0f} MB average"
                if self.php_workers and self.php_worker_avg_mb is not None
                else "no worker running"
            )
            pool = f"pool {self.php_pool}" if self.php_pool else "all pools"
            parts.append(f"PHP-FPM {self.php_version} ({pool}: {workers})")
        if self.nginx_version:
            parts.append(f"nginx {self.nginx_version}")
        if self.mariadb_version:
            data = f" (data {self.mariadb_data_mb} MB)" if self.mariadb_data_mb is not None else ""
            parts.append(f"MariaDB {self.mariadb_version}{data}")
        if self.php_files is not None:
            parts.append(f"{self.php_files} PHP files ({self.php_code_mb:.1f} MB) under {self.docroot}")
        return ", ".join(parts)


def _version(text: str | None, pattern: str) -> str | None:
    match = re.search(pattern, text or "")
    return match.group(1) if match else None


def parse(output: str, *, pool: str | None, docroot: str | None) -> Facts:
    """The facts script's ``key=value`` lines as Facts."""
    raw: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            raw[key.strip()] = value.strip()

    def number(key: str) -> int | None:
        value = raw.get(key, "")
        return int(value) if value.isdigit() else None

    cpus, total_kb = number("cpus"), number("mem_total_kb")
    if not cpus or not total_kb:
        raise StepFailed(f"could not read the CPU count and memory of the site: {output.strip()[:300]!r}")
    available_kb = number("mem_available_kb") or 0
    php_version = _version(raw.get("php_version"), r"PHP (\d+\.\d+\.\d+)")
    branch = ".".join(php_version.split(".")[:2]) if php_version else None
    workers = number("php_workers") or 0
    rss_kb = number("php_workers_rss_kb") or 0
    data_kb = number("mariadb_data_kb")
    code = number("php_code_bytes")
    return Facts(
        cpus=cpus,
        mem_total_mb=total_kb // 1024,
        mem_available_mb=available_kb // 1024,
        php_fpm_bin=raw.get("php_fpm_bin") or None,
        php_version=php_version,
        php_branch=branch,
        php_fpm_service=f"php{branch}-fpm" if branch else None,
        php_pool=pool,
        php_workers=workers,
        php_worker_avg_mb=round(rss_kb / workers / 1024, 1) if workers else None,
        nginx_version=_version(raw.get("nginx_version"), r"nginx/(\S+)"),
        mariadb_version=_version(raw.get("mariadb_version"), r"Ver (\d+\.\d+\.\d+)"),
        mariadb_data_mb=math.ceil(data_kb / 1024) if data_kb is not None else None,
        docroot=docroot if number("php_files") is not None else None,
        php_files=number("php_files"),
        php_code_mb=round(code / 1024 / 1024, 1) if code is not None else None,
    )


def _var(site_vars: dict[str, Any], name: str, default: str = "") -> str:
    value = site_vars.get(name)
    return default if value is None else str(value)


def command(site_vars: dict[str, Any]) -> list[str]:
    """The argv that reads the facts on the site (about 50 ms, plus ``find`` over the docroot)."""
    values = [
        _var(site_vars, name, default)
        for name, default in (
            ("php_fpm_bin", ""), ("php_version", ""), ("php_fpm_pool", DEFAULT_POOL), ("docroot", ""),
            ("mariadb_datadir", "/var/lib/mysql"), ("nginx_bin", "nginx"), ("mariadbd_bin", "mariadbd"),
        )
    ]  # fmt: skip
    values[2] = pool_of(site_vars) or "*"
    return ["bash", "-c", _SCRIPT, "maintainer-perf-facts", *values]


def from_output(output: str, site_vars: dict[str, Any]) -> Facts:
    """Facts from what ``command(site_vars)`` printed."""
    return parse(output, pool=pool_of(site_vars), docroot=_var(site_vars, "docroot") or None)


def pool_of(site_vars: dict[str, Any]) -> str | None:
    """The pool whose workers are measured: ``php_fpm_pool``, default ``www``; None (``*``): every pool."""
    pool = _var(site_vars, "php_fpm_pool", DEFAULT_POOL) or DEFAULT_POOL
    return None if pool == "*" else pool
