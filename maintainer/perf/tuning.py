"""Tuned values computed from a host's facts, each with the one-line reason it has that value.

The reasons name their inputs (rounded, so a re-run on the same host renders the same file):
they go into the rendered configs as comments, so a dry run's diff and the change log show why.
A value can be pinned, per site in the inventory (``perf_tuning: {pm_max_children: 20}``) or per
run in the runbook (``overrides``); ``auto``, an empty string or null leave it computed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

#: every value, by the component whose config it goes into
COMPONENT_KNOBS: dict[str, tuple[str, ...]] = {
    "php_fpm": (
        "pm", "pm_max_children", "pm_start_servers", "pm_min_spare_servers", "pm_max_spare_servers",
        "pm_max_requests",
    ),
    "opcache": (
        "opcache_enable", "opcache_memory_mb", "opcache_interned_strings_mb", "opcache_max_files",
        "opcache_revalidate_freq",
    ),
    "nginx": (
        "nginx_worker_processes", "nginx_worker_connections", "nginx_keepalive_timeout",
        "nginx_keepalive_requests", "nginx_gzip_comp_level", "nginx_static_expires", "nginx_open_file_cache",
    ),
    "mariadb": (
        "innodb_buffer_pool_mb", "innodb_log_file_mb", "mariadb_max_connections", "mariadb_tmp_table_mb",
    ),
}  # fmt: skip
KNOBS = frozenset(name for names in COMPONENT_KNOBS.values() for name in names)
#: what a component's config needs installed on the host (a fact that is None without it)
REQUIRES = {
    "php_fpm": ("php_version", "PHP-FPM"),
    "opcache": ("php_version", "PHP-FPM"),
    "nginx": ("nginx_version", "nginx"),
    "mariadb": ("mariadb_version", "MariaDB"),
}
#: a pin with one of these values is no pin: the value stays computed
UNPINNED = (None, "", "auto")
#: the worker size assumed when no worker of the pool runs to be measured
DEFAULT_WORKER_MB = 64


@dataclass(frozen=True)
class Spec:
    """What a pinned value may be: a whole number in [low, high], or one of ``choices``."""

    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # a string matching this (fully), e.g. nginx's expires

    def problem(self, value: Any) -> str | None:
        """Why ``value`` cannot be pinned (None: it can)."""
        if self.choices:
            return None if str(value) in self.choices else f"must be one of {', '.join(self.choices)}"
        if self.pattern is not None:
            ok = isinstance(value, str) and re.fullmatch(self.pattern, value.strip())
            return None if ok else f"must match {self.pattern}"
        number = _as_int(value)
        if number is None and isinstance(value, str) and re.fullmatch(r"\s*-\d+\s*", value):
            number = int(value)
        if number is None:
            return "must be a whole number"
        if self.low is not None and number < self.low:
            return f"must be at least {self.low}"
        if self.high is not None and number > self.high:
            return f"must be at most {self.high}"
        return None


#: the type and range of every pinnable value (ranges that need the host's facts: check_facts)
SPECS: dict[str, Spec] = {
    "pm": Spec(choices=("dynamic", "static", "ondemand")),
    "pm_max_children": Spec(1, 100_000),
    "pm_start_servers": Spec(1, 100_000),
    "pm_min_spare_servers": Spec(1, 100_000),
    "pm_max_spare_servers": Spec(1, 100_000),
    "pm_max_requests": Spec(0, 10_000_000),
    "opcache_enable": Spec(choices=("0", "1")),
    "opcache_memory_mb": Spec(8, 1_048_576),
    "opcache_interned_strings_mb": Spec(1, 4096),
    "opcache_max_files": Spec(200, 1_000_000),
    "opcache_revalidate_freq": Spec(0, 86_400),
    "nginx_worker_processes": Spec(1, 4096),
    "nginx_worker_connections": Spec(1, 1_048_576),
    "nginx_keepalive_timeout": Spec(0, 3600),
    "nginx_keepalive_requests": Spec(1, 10_000_000),
    "nginx_gzip_comp_level": Spec(1, 9),
    "nginx_static_expires": Spec(pattern=r"off|max|epoch|\d+(ms|s|m|h|d|w|M|y)?"),
    "nginx_open_file_cache": Spec(1, 10_000_000),
    "innodb_buffer_pool_mb": Spec(8, 16_777_216),
    "innodb_log_file_mb": Spec(1, 524_288),
    "mariadb_max_connections": Spec(1, 100_000),
    "mariadb_tmp_table_mb": Spec(1, 1_048_576),
}
#: pinned values that must fit in the host's RAM (MB): checked once the facts are known
FIT_IN_RAM = ("innodb_buffer_pool_mb", "opcache_memory_mb")


@dataclass(frozen=True)
class Policy:
    """How the host's resources are shared out; the runbook's arguments, with these defaults."""

    #: share of RAM for PHP-FPM workers; default 40%, or 60% without a local MariaDB
    php_memory_percent: int | None = None
    #: share of RAM for MariaDB's buffer pool at most
    db_memory_percent: int = 25
    #: workers per CPU at most (PHP waits on the database and the network, so more than one)
    children_per_cpu: int = 8
    #: the worker size to assume when none is running; default: 64 MB
    worker_mb: int | None = None


@dataclass(frozen=True)
class Knob:
    value: Any
    reason: str
    pinned_by: str | None = None  # "inventory perf_tuning" or "runbook overrides"

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"value": self.value, "reason": self.reason}
        if self.pinned_by:
            data["pinned_by"] = self.pinned_by
        return data


def round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


@dataclass
class _Tuner:
    pins: dict[str, tuple[Any, str]]
    knobs: dict[str, Knob] = field(default_factory=dict)
    computed: dict[str, Any] = field(default_factory=dict)

    def set(self, name: str, value: Any, reason: str) -> None:
        assert name in KNOBS, name
        self.computed[name] = value
        if name in self.pins:
            pinned, source = self.pins[name]
            self.knobs[name] = Knob(pinned, f"pinned by {source} (computed: {value}, {reason})", source)
        else:
            self.knobs[name] = Knob(value, reason)

    def int(self, name: str) -> int:
        """The value as a number for later computations (a pin that is no number: the computed one)."""
        value = _as_int(self.knobs[name].value)
        return value if value is not None else int(self.computed[name])


def pins_of(site_pins: Any, overrides: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """Pinned values and who pinned them: the runbook's overrides win over the inventory's."""
    pins: dict[str, tuple[Any, str]] = {}
    for source, values in (("inventory perf_tuning", site_pins or {}), ("runbook overrides", overrides)):
        for name, value in values.items():
            if value not in UNPINNED:
                pins[str(name)] = (value, source)
    return pins


def invalid(values: Any) -> list[str]:
    """``name=value: why`` for every pinned value of the wrong type or out of its range."""
    problems = []
    for name, value in values.items():
        spec = SPECS.get(str(name))
        if spec is None or value in UNPINNED:
            continue
        why = spec.problem(value)
        if why:
            problems.append(f"{name}={value!r} ({why})")
    return problems


def beyond_ram(pins: dict[str, tuple[Any, str]], mem_total_mb: int) -> list[str]:
    """The pins (name, value, who) that ask for more memory than the host has."""
    problems = []
    for name in FIT_IN_RAM:
        if name in pins:
            value, source = pins[name]
            number = _as_int(value)
            if number is not None and number > mem_total_mb:
                problems.append(f"{name}={value} ({source}) is more than the host's {mem_total_mb} MB RAM")
    return problems


def unknown(names: Any) -> list[str]:
    """Pin names that are no tunable value."""
    return sorted(str(n) for n in names if str(n) not in KNOBS)


def compute(facts: Any, policy: Policy, pins: dict[str, tuple[Any, str]] | None = None) -> dict[str, Knob]:
    """Every tuned value for ``facts`` (a ``facts.Facts``), with its reason."""
    t = _Tuner(pins or {})
    ram, cpus = facts.mem_total_mb, facts.cpus
    cpu_word = f"{cpus} CPU{'s' if cpus != 1 else ''}"
    db_local = facts.mariadb_version is not None

    # PHP-FPM: as many workers as the memory budget holds, at most a few per CPU
    php_percent = policy.php_memory_percent or (40 if db_local else 60)
    php_share = "" if policy.php_memory_percent else " (MariaDB shares this host)" if db_local else ""
    php_budget = ram * php_percent // 100
    if facts.php_workers and facts.php_worker_avg_mb:
        worker = max(8, round_up(facts.php_worker_avg_mb, 4))
        worker_note = (
            f"{worker} MB per worker (average RSS of {facts.php_workers} running, rounded up to 4 MB)"
        )
    else:
        worker = policy.worker_mb or DEFAULT_WORKER_MB
        worker_note = f"{worker} MB per worker (none running to measure: assumed)"
    by_memory = php_budget // worker
    by_cpu = policy.children_per_cpu * cpus
    t.set(
        "pm_max_children",
        clamp(min(by_memory, by_cpu), 2, 1000),
        f"the smaller of {php_percent}% of {ram} MB RAM{php_share} = {php_budget} MB / {worker_note} = "
        f"{by_memory} and {policy.children_per_cpu} per CPU x {cpu_word} = {by_cpu}",
    )
    children = t.int("pm_max_children")
    t.set("pm", "dynamic", "workers are started and stopped with the load, up to pm.max_children")
    t.set(
        "pm_start_servers", clamp(2 * cpus, 1, children), f"2 per CPU ({cpu_word}), at most pm.max_children"
    )
    start = t.int("pm_start_servers")
    t.set("pm_min_spare_servers", max(1, start // 2), "half of pm.start_servers")
    t.set(
        "pm_max_spare_servers",
        clamp(2 * start, 1, children),
        "twice pm.start_servers, at most pm.max_children",
    )
    t.set(
        "pm_max_requests", 500, "a worker is replaced after 500 requests: bounds the memory a leak can take"
    )

    # OPcache: room for the site's compiled code, a slot for every file
    code_mb = facts.php_code_mb
    if code_mb is not None:
        memory = clamp(round_up(3 * code_mb + 32, 32), 128, max(128, ram // 8))
        memory_note = f"3 x {code_mb:.0f} MB of PHP under {facts.docroot} + 32 MB, rounded up to 32 MB"
    else:
        memory, memory_note = 128, "no docroot to measure"
    t.set("opcache_enable", 1, "compiled PHP is kept in shared memory instead of parsed on every request")
    t.set("opcache_memory_mb", memory, f"{memory_note}; at least 128 MB, at most 1/8 of RAM")
    t.set(
        "opcache_interned_strings_mb",
        clamp(t.int("opcache_memory_mb") // 8, 8, 64),
        "1/8 of opcache.memory_consumption, 8 to 64 MB",
    )
    files = facts.php_files
    t.set(
        "opcache_max_files",
        max(10000, round_up(2 * (files or 0), 1000)),
        f"twice the {files} PHP files under {facts.docroot}, at least 10000"
        if files is not None
        else "no docroot to count: 10000",
    )
    t.set("opcache_revalidate_freq", 2, "changed files are seen within 2 s (updates apply without a reload)")

    # nginx: a worker per CPU, short keep-alive, compression, long browser caching of static files
    t.set("nginx_worker_processes", cpus, f"one per CPU ({cpu_word})")
    t.set("nginx_worker_connections", 4096, "per worker; a keep-alive client holds one")
    t.set(
        "nginx_keepalive_timeout",
        15,
        "long enough for a page's assets, short enough not to pile up idle clients",
    )
    t.set("nginx_keepalive_requests", 1000, "requests per keep-alive connection")
    t.set("nginx_gzip_comp_level", 5 if cpus > 1 else 4, "most of gzip's saving for little CPU")
    t.set("nginx_static_expires", "30d", "browsers keep static files (css, js, images, fonts) 30 days")
    t.set("nginx_open_file_cache", 10000, "file descriptors and stat() results nginx keeps for static files")

    # MariaDB: a buffer pool that holds the data, within its share of RAM
    db_budget = max(128, ram * policy.db_memory_percent // 100)
    if facts.mariadb_data_mb is not None:
        want = max(128, round_up(facts.mariadb_data_mb * 1.25, 128))
        pool_note = f"{facts.mariadb_data_mb} MB of data x 1.25, rounded up to 128 MB"
    else:
        want, pool_note = db_budget, "data size unknown (datadir not readable)"
    pool_mb = min(want, db_budget)
    t.set(
        "innodb_buffer_pool_mb",
        pool_mb,
        f"{pool_note}; at least 128 MB, at most {policy.db_memory_percent}% of {ram} MB RAM = {db_budget} MB",
    )
    t.set(
        "innodb_log_file_mb",
        clamp(round_up(t.int("innodb_buffer_pool_mb") / 4, 16), 48, 2048),
        "a quarter of the buffer pool, 48 MB to 2 GB",
    )
    t.set(
        "mariadb_max_connections",
        max(151, children + 50),
        f"pm.max_children ({children}) + 50 for cron, backups and admin tools; at least 151",
    )
    t.set(
        "mariadb_tmp_table_mb",
        64 if ram >= 4096 else 32,
        "in-memory temporary tables up to this size (64 MB from 4 GB RAM)",
    )
    return t.knobs


def summary(knobs: dict[str, Knob], components: list[str]) -> str:
    """The tuned values of ``components``, one line."""
    return ", ".join(
        f"{name}={knobs[name].value}"
        for component in components
        for name in COMPONENT_KNOBS.get(component, ())
    )
