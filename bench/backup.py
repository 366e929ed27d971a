"""Backup benchmark: maintainer against restic on the same site, database and S3 server (issue 3).

Run as root from the repository root (it starts a throwaway moto_server and MariaDB, and with
``--ssh`` a loopback sshd, like the tests):

    /tmp/venv/bin/python -m bench.backup [--size-mb 1024] [--files 30000] [--rows 1000000] [--quick] [--ssh]

It generates a site (tens of thousands of small PHP/JS/CSS files, JPEG-like random uploads, a few
large files, one of them random) and a database (one wide table), then, in one run and against the
same moto server, backs both up with maintainer (``create_backup``: files and database in one call)
and with Debian's ``restic`` (``restic backup DOCROOT`` plus ``mariadb-dump | restic backup
--stdin``): a first backup, a second one with nothing changed, a third after changing 1% of the
files; then restores the latest backup of each (files into a fresh directory, the dump into a fresh
database) and checks both restores against the source (every file's SHA-256, CHECKSUM TABLE).

Each maintainer phase runs in its own Python process (the library called directly, through
``LocalTransport`` or, with ``--ssh``, ``SSHTransport``), so its peak RSS is its own; restic runs as
the command line it is. Times are wall-clock on a shared 2-CPU machine: compare the ratios, which are
measured in the same run against the same server. ``--profile`` adds cProfile's top functions of
each maintainer phase (main thread only).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import resource
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from maintainer.backup.database import MySQLClient  # noqa: E402
from tests.servers.mariadb import MariaDBServer, running_mariadb, sql_ident, sql_string  # noqa: E402
from tests.servers.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, running_moto  # noqa: E402

MB = 1024 * 1024
KB = 1024
SITE = "benchsite"
DB_NAME = "bench"
DB_USER = "bench"
DB_PASSWORD = "bench-pw-1"
RESTIC_PASSWORD = "bench-restic"
SEED = 3


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def mb(n: float) -> str:
    return f"{n / MB:,.1f} MB"


# ---------------------------------------------------------------------------- the site


SYLLABLES = (
    "get", "set", "post", "meta", "user", "term", "query", "cache", "option", "render", "block", "wp",
    "admin", "widget", "theme", "plugin", "filter", "hook", "action", "nonce", "field", "value", "item",
    "list", "image", "size", "url", "path", "file", "load", "init", "data", "html", "attr", "esc",
    "sanitize", "update", "delete", "insert", "fetch", "parse", "build", "config", "site", "blog",
    "comment", "author", "date", "time", "format", "lang", "text", "title", "content", "excerpt", "status",
    "type", "args", "params", "default", "request", "response", "header", "body", "style", "script", "menu",
    "nav", "page", "archive", "search", "feed", "rest", "route", "schema", "table", "column", "row", "cart",
    "order", "product", "price", "tax", "shipping", "coupon", "session", "token", "auth", "login", "role",
    "capability"
)
WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
    "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you",
    "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will",
    "would", "who", "so", "no", "returns", "value", "array", "string", "object", "callback", "optional",
    "default", "filter", "deprecated", "since", "version"
)
LINE_TEMPLATES = (
    "\t${a} = {f}( ${b}, '{c}' );",
    "function {f}( ${a}, ${b} = null ) {{",
    "\treturn ${a}['{c}'] ?? {n};",
    "\tif ( ! empty( ${a} ) && is_array( ${b} ) ) {{",
    "\t}}",
    "}}",
    " * @param {t} ${a} {w1} {w2} {w3} {w4}.",
    " * @since {n}.{m}.0",
    "\t\t${a}->{f}( '{c}', array( '{d}' => {n} ) );",
    "\t\t\t'{c}' => __( '{w1} {w2} {w3}', '{d}' ),",
    "<div class=\"{c}-{d}\"><?php echo esc_html( ${a} ); ?></div>",
    ".{c}-{d} {{ margin: {n}px {m}px; color: #{hex}; }}",
    "\tconst {a} = document.querySelector( '.{c}-{d}' );",
    "\t{a}.addEventListener( '{c}', function ( event ) {{ {f}( event, {n} ); }} );",
    "// {w1} {w2} {w3} {w4} {w5}",
    "",
)


class Text:
    """Source-code-like text from a pool of lines: compresses about like PHP does (3-5x)."""

    def __init__(self, rng: random.Random, lines: int = 60_000) -> None:
        idents = ["_".join(rng.choices(SYLLABLES, k=rng.randint(1, 3))) for _ in range(3000)]
        types = ("int", "string", "array", "bool", "WP_Post", "WP_Query", "mixed")
        self.rng = rng
        self.pool = [
            rng.choice(LINE_TEMPLATES).format(
                a=rng.choice(idents), b=rng.choice(idents), c=rng.choice(idents), d=rng.choice(idents),
                f=rng.choice(idents), t=rng.choice(types), n=rng.randint(0, 999), m=rng.randint(0, 99),
                hex=f"{rng.getrandbits(24):06x}", w1=rng.choice(WORDS), w2=rng.choice(WORDS),
                w3=rng.choice(WORDS), w4=rng.choice(WORDS), w5=rng.choice(WORDS),
            )
            for _ in range(lines)
        ]  # fmt: skip

    def make(self, size: int, header: str) -> bytes:
        lines = self.rng.choices(self.pool, k=size // 36 + 1)
        return (header + "\n".join(lines)).encode()[:size]


@dataclass
class SiteFile:
    path: str  # relative to the docroot
    kind: str  # text, upload-random, upload-text, large-random, large-text
    size: int


@dataclass
class GeneratedSite:
    root: Path
    files: list[SiteFile]
    dirs: int
    symlinks: int

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def describe(self) -> str:
        by_kind: dict[str, list[int]] = {}
        for f in self.files:
            by_kind.setdefault(f.kind, []).append(f.size)
        incompressible = sum(f.size for f in self.files if f.kind.endswith("random"))
        parts = ", ".join(f"{len(v):,} {k} ({mb(sum(v))})" for k, v in sorted(by_kind.items()))
        return (
            f"site: {mb(self.bytes)} in {len(self.files):,} files, {self.dirs:,} dirs, {self.symlinks} "
            f"symlinks; {parts}; incompressible {100 * incompressible / max(self.bytes, 1):.0f}%"
        )


def generate_site(root: Path, size: int, count: int, rng: random.Random) -> GeneratedSite:
    """About ``size`` bytes in about ``count`` files under ``root``."""
    text = Text(rng)
    files: list[SiteFile] = []
    dirs: set[str] = set()

    def write(rel: str, data: bytes, kind: str) -> None:
        path = root / rel
        if str(path.parent) not in dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            dirs.add(str(path.parent))
        path.write_bytes(data)
        files.append(SiteFile(rel, kind, len(data)))

    def write_large(rel: str, total: int, kind: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        dirs.add(str(path.parent))
        with path.open("wb") as fh:
            left = total
            while left > 0:
                n = min(MB, left)
                fh.write(os.urandom(n) if kind.endswith("random") else text.make(n, ""))
                left -= n
        files.append(SiteFile(rel, kind, total))

    large_each = max(MB, int(size * 0.30) // 3)
    text_avg = (1 + 20) * KB // 2
    upload_avg = 1200 * KB
    uploads_est = max(0, size - 3 * large_each - count * text_avg) // upload_avg
    text_count = max(1, count - 3 - uploads_est)

    # small text files: packages of six directories each, about 25 files a directory
    areas = ("wp-includes", "wp-admin/includes", "wp-content/plugins", "wp-content/themes", "vendor")
    subdirs = (("", ".php"), ("includes", ".php"), ("assets/js", ".js"), ("assets/css", ".css"),
               ("templates", ".php"), ("languages", ".po"))  # fmt: skip
    packages = max(1, text_count // (25 * len(subdirs)))
    names = [f"{'-'.join(rng.choices(SYLLABLES, k=2))}-{i}" for i in range(packages)]
    for i in range(text_count):
        pkg = rng.randrange(packages)
        sub, ext = subdirs[rng.randrange(len(subdirs))]
        directory = "/".join(p for p in (areas[pkg % len(areas)], names[pkg], sub) if p)
        rel = f"{directory}/{'-'.join(rng.choices(SYLLABLES, k=2))}-{i}{ext}"
        header = f"<?php\n/**\n * {rel}\n * @package {names[pkg]} build {rng.getrandbits(64):x}\n */\n"
        write(rel, text.make(rng.randint(KB, 20 * KB), header), "text")

    # uploads: JPEG-like random bytes (three quarters) and SVG/CSV-like text, until the size is reached
    large_total = 3 * large_each
    budget = size - large_total - sum(f.size for f in files)
    n = 0
    while budget > 0:
        want = min(budget, rng.randint(100 * KB, 2300 * KB))
        folder = f"wp-content/uploads/{2015 + n % 10}/{1 + n // 10 % 12:02d}"
        if rng.random() < 0.75:
            data = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(max(0, want - 11))
            write(f"{folder}/img-{n}.jpg", data, "upload-random")
        else:
            write(f"{folder}/export-{n}.svg", text.make(want, f"<svg id='{n}'>\n"), "upload-text")
        budget -= want
        n += 1

    write_large("wp-content/uploads/video/intro.mp4", large_each, "large-random")
    write_large("wp-content/debug.log", large_each, "large-text")
    write_large("wp-content/uploads/wc-logs/export.xml", large_each, "large-text")
    (root / "wp-content/uploads/latest").symlink_to("2024/12")
    (root / "wp-config-sample.php").symlink_to("wp-includes/version.php")  # dangling is fine too
    all_dirs = {str(p) for p in root.rglob("*") if p.is_dir() and not p.is_symlink()}
    return GeneratedSite(root, files, len(all_dirs), 2)


def change_files(site: GeneratedSite, fraction: float, rng: random.Random) -> tuple[int, int]:
    """Change ``fraction`` of the files (the three large ones excepted): text gets a line, images new bytes."""
    candidates = [f for f in site.files if not f.kind.startswith("large")]
    chosen = rng.sample(candidates, max(1, round(fraction * len(site.files))))
    changed = 0
    for f in chosen:
        path = site.root / f.path
        if f.kind == "upload-random":  # a re-optimised image: same size, new bytes
            path.write_bytes(path.read_bytes()[:11] + os.urandom(f.size - 11))
        else:
            with path.open("ab") as fh:
                fh.write(f"\n// changed by the benchmark {rng.getrandbits(64):x}\n".encode())
            f.size = path.stat().st_size
        changed += f.size
    return len(chosen), changed


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root``: (type, mode, size, SHA-256, mtime s) for files, (type, mode) for dirs."""
    state: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                state[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                state[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                digest = hashlib.sha256()
                with open(path, "rb") as fh:
                    while chunk := fh.read(MB):
                        digest.update(chunk)
                state[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, digest.hexdigest(), int(st.st_mtime))
    return state


def compare_trees(source: dict[str, tuple[Any, ...]], restored: dict[str, tuple[Any, ...]]) -> list[str]:
    problems = [f"missing {p}" for p in sorted(source.keys() - restored.keys())]
    problems += [f"extra {p}" for p in sorted(restored.keys() - source.keys())]
    problems += [f"differs {p}: {source[p]} != {restored[p]}" for p in sorted(source) if p in restored
                 and source[p] != restored[p]]  # fmt: skip
    return problems


# ---------------------------------------------------------------------------- the database


def generate_database(server: MariaDBServer, rows: int) -> None:
    """One WordPress-posts-like table of ``rows`` rows (about 200 bytes each in a dump), plus a small one."""
    user = sql_string(DB_USER)
    scratch = sql_ident(DB_NAME + "\\_%")
    server.sql(
        f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
        f" CREATE USER {user}@'%' IDENTIFIED BY {sql_string(DB_PASSWORD)};"
        f" GRANT ALL PRIVILEGES ON {DB_NAME}.* TO {user}@'%';"
        f" GRANT ALL PRIVILEGES ON {scratch}.* TO {user}@'%';"
    )
    server.sql(
        """
        CREATE TABLE posts (
            id INT UNSIGNED NOT NULL PRIMARY KEY,
            author_id INT UNSIGNED NOT NULL,
            created DATETIME NOT NULL,
            status ENUM('publish', 'draft', 'private') NOT NULL,
            title VARCHAR(200) NOT NULL,
            slug VARCHAR(200) NOT NULL,
            excerpt VARCHAR(500) NOT NULL,
            digest BINARY(32) NOT NULL,
            score DOUBLE NOT NULL,
            KEY author_created (author_id, created)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
        CREATE TABLE options (
            name VARCHAR(191) NOT NULL PRIMARY KEY,
            value LONGTEXT NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
        INSERT INTO options SELECT CONCAT('option_', seq), REPEAT(MD5(seq), 1 + seq % 40) FROM seq_1_to_2000;
        """,
        DB_NAME,
    )
    batch = 200_000
    for start in range(1, rows + 1, batch):
        end = min(rows, start + batch - 1)
        server.sql(
            f"""
            INSERT INTO posts
            SELECT seq, seq % 997, '2015-01-01' + INTERVAL seq MINUTE,
                   ELT(1 + seq % 3, 'publish', 'draft', 'private'),
                   CONCAT(ELT(1 + seq % 7, 'Coffee', 'Bikes', 'Gardens', 'Rust', 'Python', 'Tea', 'Maps'),
                          ' notes, part ', seq),
                   CONCAT('post-', seq, '-', LEFT(MD5(seq), 6)),
                   CONCAT('Lorem ipsum dolor sit amet ', REPEAT(LEFT(SHA1(seq), 4 + seq % 12), 1 + seq % 4),
                          ' consectetur adipiscing elit ', seq % 1000),
                   UNHEX(SHA2(seq, 256)), seq * 1.37 / 7
            FROM seq_{start}_to_{end}
            """,
            DB_NAME,
            timeout=1800,
        )


def table_checksums(server: MariaDBServer, database: str) -> dict[str, tuple[str, str]]:
    """(rows, CHECKSUM TABLE) of every table of ``database``."""
    tables = server.sql("SHOW TABLES", database).split()
    result = {}
    for table in tables:
        count = server.sql(f"SELECT COUNT(*) FROM {sql_ident(table)}", database, timeout=600).strip()
        checksum = server.sql(f"CHECKSUM TABLE {sql_ident(table)}", database, timeout=600).split()[-1]
        result[table] = (count, checksum)
    return result


# ---------------------------------------------------------------------------- processes


@dataclass
class Run:
    seconds: float  # wall clock of the measured part
    peak: int  # bytes: the largest RSS of the process and the children it waited for
    cpu: float  # user + system seconds, children included
    uploaded: int = 0  # bytes added to the bucket
    parts: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def measured(argv: list[str], log: Path, *, env: dict[str, str] | None = None, polite: bool = False) -> Run:
    """Run ``argv`` in its own process group; wall time, peak RSS and CPU from wait4().

    On any exception (Ctrl-C) the group is stopped: TERM first when ``polite`` (maintainer
    children stop their own commands on it), then KILL.
    """
    os.sync()  # the previous phase's dirty pages are not this one's to write back
    started = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True, cwd=REPO,
        )  # fmt: skip
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        stop_group(proc, polite)
        raise
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-8000:]
        raise RuntimeError(f"{shlex.join(argv)[:300]} failed with exit code {proc.returncode}:\n{tail}")
    return Run(seconds, usage.ru_maxrss * KB, usage.ru_utime + usage.ru_stime)


def stop_group(proc: subprocess.Popen[bytes], polite: bool) -> None:
    """Stop a child we started, and its process group (its id is the child's PID)."""
    with contextlib.suppress(ProcessLookupError):
        if polite:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        proc.wait()


def bucket_bytes(s3: S3Server, bucket: str) -> int:
    total = 0
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        total += sum(int(o["Size"]) for o in page.get("Contents", ()))
    return total


# ---------------------------------------------------------------------------- maintainer


class TimedTransport:
    """Passes everything to the real transport and notes how long each command or stream took."""

    def __init__(self, inner: Any, clock: Callable[[], float], events: list[list[Any]]) -> None:
        self._inner = inner
        self._clock = clock
        self._events = events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _note(self, kind: str, command: Any, started: float) -> None:
        text = command if isinstance(command, str) else shlex.join(command)
        self._events.append([kind, " ".join(text.split())[:4000], round(started, 3), round(self._clock(), 3)])

    @contextlib.contextmanager
    def stream_out(self, command: Any, **kwargs: Any) -> Iterator[Any]:
        started = self._clock()
        try:
            with self._inner.stream_out(command, **kwargs) as stream:
                yield stream
        finally:
            self._note("out", command, started)

    @contextlib.contextmanager
    def stream_in(self, command: Any, **kwargs: Any) -> Iterator[Any]:
        started = self._clock()
        try:
            with self._inner.stream_in(command, **kwargs) as stream:
                yield stream
        finally:
            self._note("in", command, started)

    def run(self, command: Any, **kwargs: Any) -> Any:
        started = self._clock()
        try:
            return self._inner.run(command, **kwargs)
        finally:
            self._note("run", command, started)


def child_main(spec_file: str) -> None:
    """One maintainer phase in this process: ``backup`` or ``restore``; the result as JSON."""
    spec = json.loads(Path(spec_file).read_text())
    cancel = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: cancel.set())
    t0 = time.perf_counter()
    from maintainer.backup.config import site_backup
    from maintainer.backup.create import create_backup
    from maintainer.backup.manifest import find_backup
    from maintainer.backup.restore import restore_backup
    from maintainer.backup.streams import Deadline
    from maintainer.inventory import Site
    from maintainer.transport import LocalTransport

    inner: Any
    if spec["ssh"]:
        from maintainer.ssh import SSHTransport

        ssh = spec["ssh"]
        inner = SSHTransport.from_vars(ssh["host"], ssh["port"], ssh["user"], spec["site_vars"])
        inner.connect()
    else:
        inner = LocalTransport()
    startup = time.perf_counter() - t0
    events: list[list[Any]] = []
    messages: list[list[Any]] = []
    started = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - started

    transport = TimedTransport(inner, clock, events)
    backup = site_backup(Site(SITE, spec["site_vars"], []))
    profiler = None
    if spec["profile"]:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    def log(message: str) -> None:
        messages.append([round(clock(), 3), message])

    if spec["phase"] == "backup":
        record = create_backup(transport, backup, Deadline(cancel), log=log).record()  # type: ignore[arg-type]
    else:
        store = backup.store()
        manifest = find_backup(store, "latest")
        record = restore_backup(
            transport,  # type: ignore[arg-type]
            backup, store, manifest, Deadline(cancel), to=spec["to"], db_name=spec["db"], log=log,
        ).record()  # fmt: skip
    seconds = clock()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["profile"])
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KB
    result = {"seconds": seconds, "startup": startup, "events": events, "log": messages, "record": record,
              "peak_self": peak_self}  # fmt: skip
    Path(spec["result"]).write_text(json.dumps(result))
    if spec["ssh"]:
        inner.close()


@dataclass
class Bench:
    work: Path
    s3: S3Server
    db: MariaDBServer
    docroot: Path
    ssh: Any  # SSHServer or None
    profile: bool
    m_bucket: str = ""
    r_bucket: str = ""
    restic_env: dict[str, str] = field(default_factory=dict)
    client_cnf: Path = Path()
    n: int = 0

    def site_vars(self) -> dict[str, Any]:
        vars_: dict[str, Any] = self.ssh.site_vars() if self.ssh else {"ansible_connection": "local"}
        vars_.update(
            docroot=str(self.docroot),
            backup={
                "target": f"s3://{self.m_bucket}/sites",
                "s3": {"endpoint_url": self.s3.endpoint_url, "region": REGION,
                       "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},
            },
            db={"engine": "mariadb", "name": DB_NAME, "user": DB_USER, "password": DB_PASSWORD,
                "host": self.db.host, "port": self.db.port},
        )
        return vars_

    def maintainer(self, phase: str, *, to: str | None = None, db: str | None = None) -> Run:
        self.n += 1
        name = f"m{self.n}-{phase}"
        spec = {
            "phase": phase, "site_vars": self.site_vars(), "to": to, "db": db,
            "ssh": {"host": self.ssh.host, "port": self.ssh.port, "user": self.ssh.user} if self.ssh else None,
            "result": str(self.work / f"{name}.json"),
            "profile": str(self.work / f"{name}.prof") if self.profile else None,
        }  # fmt: skip
        spec_file = self.work / f"{name}.spec.json"
        spec_file.write_text(json.dumps(spec))
        spec_file.chmod(0o600)
        before = bucket_bytes(self.s3, self.m_bucket)
        argv = [sys.executable, "-m", "bench.backup", "--child", str(spec_file)]
        run = measured(argv, self.work / f"{name}.log", polite=True)
        run.uploaded = bucket_bytes(self.s3, self.m_bucket) - before
        result = json.loads((self.work / f"{name}.json").read_text())
        run.details = result
        run.details["process_seconds"] = run.seconds
        run.seconds = result["seconds"]  # the library call; interpreter start and imports apart
        run.parts = breakdown(result["events"], phase)
        return run

    # restic: the same data, files and a dump, to the same server

    def restic(self, *args: str, name: str) -> Run:
        self.n += 1
        return measured(["restic", *args], self.work / f"r{self.n}-{name}.log", env=self.restic_env)

    def restic_shell(self, script: str, name: str) -> Run:
        self.n += 1
        argv = ["bash", "-c", "set -euo pipefail\n" + script]
        return measured(argv, self.work / f"r{self.n}-{name}.log", env=self.restic_env)

    def restic_backup(self) -> Run:
        before = bucket_bytes(self.s3, self.r_bucket)
        files = self.restic("backup", "-q", "--host", "bench", "--tag", "files", str(self.docroot), name="files")
        dump = shlex.join([dump_tool(), f"--defaults-extra-file={self.client_cnf}", *MySQLClient.DUMP_OPTIONS,
                           "--", DB_NAME])  # fmt: skip
        db = self.restic_shell(
            f"{dump} | restic backup -q --host bench --tag db --stdin --stdin-filename db.sql", "db"
        )
        return Run(
            files.seconds + db.seconds, max(files.peak, db.peak), files.cpu + db.cpu,
            bucket_bytes(self.s3, self.r_bucket) - before, {"files": files.seconds, "database": db.seconds},
        )  # fmt: skip

    def restic_restore(self, target: Path, database: str) -> Run:
        files = self.restic("restore", "latest", "--host", "bench", "--tag", "files", "--target", str(target),
                            name="restore-files")  # fmt: skip
        client = shlex.join([client_tool(), f"--defaults-extra-file={self.client_cnf}",
                             "--default-character-set=utf8mb4", "--batch"])  # fmt: skip
        db = self.restic_shell(
            f"{client} -e {shlex.quote(f'CREATE DATABASE {database} CHARACTER SET utf8mb4')}\n"
            f"restic dump --host bench --tag db latest /db.sql | {client} -- {database}",
            "restore-db",
        )
        return Run(files.seconds + db.seconds, max(files.peak, db.peak), files.cpu + db.cpu, 0,
                   {"files": files.seconds, "database": db.seconds})  # fmt: skip


def dump_tool() -> str:
    return "mariadb-dump" if shutil.which("mariadb-dump") else "mysqldump"


def client_tool() -> str:
    return "mariadb" if shutil.which("mariadb") else "mysql"


def breakdown(events: list[list[Any]], phase: str) -> dict[str, float]:
    """Seconds per kind of transport command (a stream's time includes what we did with its bytes)."""
    parts: dict[str, float] = {}
    for kind, command, started, ended in events:
        words = command.split()
        if "find" in words:
            name = "listing (find)" if phase == "backup" else "listing extras (find)"
        elif words and words[0] == "tar" and kind == "out":
            name = "files: tar -> pack -> zstd -> S3"
        elif words and words[0] == "tar":
            name = "files: S3 -> unzstd -> tar -x"
        elif "sha256sum" in command:
            name = "hash touched files"
        elif "dump" in command and kind == "out":
            name = "database: dump -> zstd -> S3"
        elif kind == "in" and ("mariadb" in command or "mysql" in command):
            name = "database: S3 -> unzstd -> mariadb"
        elif "CHECKSUM TABLE" in command:
            name = "database: table checksums"
        elif "mktemp" in command or "client.cnf" in command or words[:2] == ["rm", "-rf"]:
            name = "database: client setup"
        elif "--execute" in words:
            name = "database: queries"
        else:
            name = "other commands"
        parts[name] = parts.get(name, 0.0) + (ended - started)
    return parts


# ---------------------------------------------------------------------------- the run


@dataclass
class Row:
    metric: str
    ours: str
    theirs: str
    ratio: str
    goal: str
    met: str


def ratio(theirs: float, ours: float) -> float:
    return theirs / ours if ours > 0 else float("inf")


def benchmark(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    rng = random.Random(SEED)
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="maintainer-bench-backup-")))
    work = tmp / "work"
    work.mkdir()
    say("starting moto_server and MariaDB" + (" and sshd" if args.ssh else ""))
    s3 = stack.enter_context(running_moto())
    db = stack.enter_context(running_mariadb("--innodb-buffer-pool-size=512M"))
    ssh = None
    if args.ssh:
        from tests.servers.sshd import running_sshd

        ssh = stack.enter_context(running_sshd())
        docroot = ssh.workspace("site") / "docroot"  # the test user reads it; restores go to its workspace
        m_restore = ssh.workspace("restore-maintainer")
    else:
        docroot = tmp / "site" / "docroot"
        m_restore = tmp / "restore-maintainer"
    docroot.mkdir(parents=True)
    r_restore = tmp / "restore-restic"

    started = time.perf_counter()
    site = generate_site(docroot, args.size_mb * MB, args.files, rng)
    if ssh is not None:
        subprocess.run(["chown", "-R", f"{ssh.user}:{ssh.user}", str(docroot.parent)], check=True)
    say(f"{site.describe()} ({time.perf_counter() - started:.1f} s)")
    started = time.perf_counter()
    generate_database(db, args.rows)
    say(f"database: {args.rows:,} rows in table posts ({time.perf_counter() - started:.1f} s)")

    bench = Bench(work, s3, db, docroot, ssh, args.profile)
    bench.m_bucket = s3.create_bucket("maintainer")
    bench.r_bucket = f"restic-{os.urandom(6).hex()}"
    bench.client_cnf = work / "client.cnf"
    bench.client_cnf.write_text(f"[client]\nuser={DB_USER}\npassword={DB_PASSWORD}\nhost={db.host}\nport={db.port}\n")
    bench.client_cnf.chmod(0o600)
    bench.restic_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
        "RESTIC_REPOSITORY": f"s3:{s3.endpoint_url}/{bench.r_bucket}", "RESTIC_PASSWORD": RESTIC_PASSWORD,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "RESTIC_CACHE_DIR": str(work / "restic-cache"),
    }  # fmt: skip
    bench.restic("init", name="init")

    m: dict[str, Run] = {}
    r: dict[str, Run] = {}
    say("first backup: maintainer")
    m["first"] = bench.maintainer("backup")
    say("first backup: restic")
    r["first"] = bench.restic_backup()
    say("second backup, nothing changed: maintainer")
    m["same"] = bench.maintainer("backup")
    say("second backup, nothing changed: restic")
    r["same"] = bench.restic_backup()
    count, changed = change_files(site, 0.01, rng)
    say(f"changed {count} files ({mb(changed)}); backup: maintainer")
    m["changed"] = bench.maintainer("backup")
    say("backup after the change: restic")
    r["changed"] = bench.restic_backup()
    say("restore of the latest backup: maintainer")
    m["restore"] = bench.maintainer("restore", to=str(m_restore), db=f"{DB_NAME}_rm")
    say("restore of the latest backup: restic")
    r["restore"] = bench.restic_restore(r_restore, f"{DB_NAME}_rr")

    say("checking both restores against the source")
    source = tree_state(docroot)
    problems_m = compare_trees(source, tree_state(m_restore))
    problems_r = compare_trees(source, tree_state(r_restore / docroot.relative_to("/")))
    sums = {name: table_checksums(db, name) for name in (DB_NAME, f"{DB_NAME}_rm", f"{DB_NAME}_rr")}
    dump_bytes = m["first"].details["record"]["databases"][0]["bytes"]
    report(args, site, count, changed, dump_bytes, m, r, problems_m, problems_r, sums)
    if args.profile:
        profiles(work)


def report(
    args: argparse.Namespace, site: GeneratedSite, count: int, changed: int, dump_bytes: int,
    m: dict[str, Run], r: dict[str, Run], problems_m: list[str], problems_r: list[str],
    sums: dict[str, dict[str, tuple[str, str]]],
) -> None:  # fmt: skip
    print()
    print(site.describe())
    print(f"database: {args.rows:,} rows (+2,000 options rows), dump {mb(dump_bytes)}")
    print(f"1% change: {count} files ({mb(changed)}) rewritten (text +1 line, images new bytes); DB unchanged")
    where = "SSHTransport over loopback sshd" if args.ssh else "LocalTransport"
    print(f"maintainer: library in its own process via {where}; restic {restic_version()} reads files locally")
    print("times: seconds of wall clock (os.sync() before each; maintainer runs first in each pair); "
          "maintainer's exclude its interpreter start (see details)")
    print()
    rows: list[Row] = []

    def timed(metric: str, key: str, goal: float | None) -> None:
        x = ratio(r[key].seconds, m[key].seconds)
        rows.append(Row(metric, f"{m[key].seconds:.2f} s", f"{r[key].seconds:.2f} s", f"{x:.2f}x",
                        f">= {goal:.1f}x" if goal else "-", ("yes" if x >= goal else "NO") if goal else "-"))  # fmt: skip

    def uploaded(metric: str, key: str, limit: float | None) -> None:
        share = m[key].uploaded / site.bytes
        x = ratio(r[key].uploaded, m[key].uploaded)
        rows.append(Row(metric, f"{mb(m[key].uploaded)} ({100 * share:.2f}%)",
                        f"{mb(r[key].uploaded)} ({100 * r[key].uploaded / site.bytes:.2f}%)", f"{x:.2f}x",
                        f"< {100 * limit:.0f}% of files" if limit else "-",
                        ("yes" if share < limit else "NO") if limit else "-"))  # fmt: skip

    timed("first backup", "first", 1.0)
    uploaded("  bytes uploaded", "first", None)
    timed("no-change backup", "same", 2.0)
    uploaded("  bytes uploaded", "same", 0.01)
    timed("1% changed backup", "changed", None)
    uploaded("  bytes uploaded", "changed", None)
    timed("restore (files + db)", "restore", 1.0)
    peak_m = max(run.peak for run in m.values())
    peak_r = max(run.peak for run in r.values())
    rows.append(Row("peak memory (RSS)", mb(peak_m), mb(peak_r), f"{ratio(peak_r, peak_m):.2f}x",
                    "< 200 MB", "yes" if peak_m < 200 * MB else "NO"))  # fmt: skip
    headers = Row("metric", "maintainer", "restic", "r/m", "goal", "met?")
    widths = [max(len(getattr(row, f)) for row in [headers, *rows]) for f in Row.__dataclass_fields__]
    for row in [headers, *rows]:
        cells = [getattr(row, f) for f in Row.__dataclass_fields__]
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))))
    print("ratio r/m = restic / maintainer: above 1 means maintainer is faster (or uploads less, uses less)")

    print("\ndetails")
    for key, label in (("first", "first"), ("same", "no change"), ("changed", "1% changed"), ("restore", "restore")):
        mm, rr = m[key], r[key]
        parts = ", ".join(f"{k} {v:.2f}" for k, v in mm.parts.items())
        start = mm.details["process_seconds"] - mm.seconds
        print(f"  {label:10} maintainer {mm.seconds:6.2f} s (+{start:.2f} s process start/exit), cpu "
              f"{mm.cpu:6.2f} s, peak {mb(mm.peak)}; {parts}")  # fmt: skip
        rparts = ", ".join(f"{k} {v:.2f}" for k, v in rr.parts.items())
        print(f"  {'':10} restic     {rr.seconds:6.2f} s, cpu {rr.cpu:6.2f} s, peak {mb(rr.peak)}; {rparts}")
        if key != "restore":
            rec = mm.details["record"]
            print(f"  {'':10} maintainer sent {rec['new_files']:,} files ({mb(rec['new_bytes'])}), read "
                  f"{mb(rec['bytes_read'])} from the site; uploaded {mb(mm.uploaded)} = "
                  f"{100 * mm.uploaded / (site.bytes + dump_bytes):.2f}% of files + dump")  # fmt: skip

    print("\ncorrectness")
    for name, problems in (("maintainer", problems_m), ("restic", problems_r)):
        shown = "; ".join(problems[:3])
        print(f"  {name:10} files: {'identical' if not problems else f'{len(problems)} problems: {shown}'}"
              " (path, type, mode, size, SHA-256, mtime of every file)")  # fmt: skip
    source = sums[DB_NAME]
    for name, label in ((f"{DB_NAME}_rm", "maintainer"), (f"{DB_NAME}_rr", "restic")):
        same = sums[name] == source
        print(f"  {label:10} database: {'identical' if same else 'DIFFERENT'} (row counts and CHECKSUM TABLE"
              f" of {len(source)} tables{'' if same else f': {sums[name]} != {source}'})")  # fmt: skip
    mismatches = m["restore"].details["record"].get("table_mismatches")
    if mismatches:
        print(f"  maintainer's own post-restore check reported: {mismatches}")


def restic_version() -> str:
    out = subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.split()
    return out[1] if len(out) > 1 else "?"


def profiles(work: Path) -> None:
    import io
    import pstats

    for prof in sorted(work.glob("m*.prof"), key=lambda p: int(p.name[1:].split("-")[0])):
        out = io.StringIO()
        pstats.Stats(str(prof), stream=out).sort_stats("tottime").print_stats(14)
        lines = [line for line in out.getvalue().splitlines() if line.strip()]
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        print(f"\nprofile {prof.stem} (main thread, top by own time)")
        print("\n".join(lines[start - 1 :] if start else lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="site size in MiB")
    parser.add_argument("--files", type=int, default=30_000, help="number of files in the site")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the database's big table")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 MB, 5,000 files, 100,000 rows")
    parser.add_argument("--ssh", action="store_true", help="maintainer reaches the site through loopback sshd")
    parser.add_argument("--profile", action="store_true", help="cProfile each maintainer phase")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return
    if args.quick:
        args.size_mb, args.files, args.rows = 100, 5_000, 100_000
    run_bench(
        benchmark,
        args,
        "bench/backup.py needs root: it starts throwaway servers (and a test user with --ssh)",
        ("restic", "mariadb-install-db", "bash"),
    )


def run_bench(
    body: Callable[[argparse.Namespace, contextlib.ExitStack], None],
    args: argparse.Namespace,
    needs_root: str,
    tools: tuple[str, ...],
) -> None:
    """Check root and the tools, then run ``body``; SIGINT/SIGTERM stop the servers and clean up."""
    if os.geteuid() != 0:
        sys.exit(needs_root)
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (bash .ci/run installs it)")

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # also when started in the background, where SIGINT comes ignored
    with contextlib.ExitStack() as stack:
        try:
            body(args, stack)
        except KeyboardInterrupt:
            say("interrupted: stopping the servers and removing the temp files")
            raise SystemExit(130) from None


if __name__ == "__main__":
    main()
