"""Restore drill benchmark (issue 4): the whole verified drill against restic's bare restore, in one run.

Run as root from the repository root (it starts a throwaway moto_server and MariaDB, like the tests):

    /tmp/venv/bin/python -m bench.drill [--size-mb 1024] [--files 30000] [--rows 1000000] [--quick]

The site and database are the backup benchmark's (``bench/backup.py``: its generator, its restic
setup, its restic restore), plus an ``index.php`` that prints a marker for the smoke test. Both
tools back them up once to the same moto server; then:

- maintainer: ``run_drill`` (the library call the ``restore_drill`` action makes) through
  ``LocalTransport``: fetch the manifest, restore the files into a scratch dir with every SHA-256
  checked, import the dump into a scratch database and compare every table's row count and
  CHECKSUM TABLE, serve the copy with ``php -S`` and fetch its home page, clean up. Its RTO
  (drill start to verified and serving) is the figure.
- restic: ``restic restore latest`` of the files plus ``restic dump | mariadb`` into a fresh
  database: a bare restore, nothing verified, nothing served.

Goal: the drill's RTO within 1.2x of restic's bare restore. Times are wall clock on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.backup import (  # noqa: E402
    DB_NAME,
    MB,
    RESTIC_PASSWORD,
    SEED,
    SITE,
    Bench,
    generate_database,
    generate_site,
    mb,
    restic_version,
    run_bench,
    say,
)
from tests.servers.mariadb import running_mariadb  # noqa: E402
from tests.servers.s3 import ACCESS_KEY, SECRET_KEY, running_moto  # noqa: E402

MARKER = "bench drill marker"
GOAL = 1.2


def drill(bench: Bench) -> dict[str, Any]:
    """The drill as the action runs it, in this process; its record."""
    from maintainer.backup.config import site_backup
    from maintainer.backup.drill import DrillPlace, DrillSettings, run_drill
    from maintainer.backup.streams import Deadline
    from maintainer.inventory import Site
    from maintainer.transport import LocalTransport

    spec = site_backup(Site(SITE, bench.site_vars(), []))
    place = DrillPlace(LocalTransport(), SITE, spec.db, str(bench.work))
    os.sync()
    result = run_drill(
        spec, spec.store(), place, Deadline(threading.Event()), health_marker=MARKER, cms="custom",
        # a site with a database says how its copy reaches the scratch one, or nothing is served
        settings=DrillSettings(smoke_env={"BENCH_DB": "{db}"}),
        log=lambda message: say(f"  drill: {message}"),
    )  # fmt: skip
    return result.record.record()


def benchmark(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    rng = random.Random(SEED)
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="maintainer-bench-drill-")))
    work = tmp / "work"
    work.mkdir()
    say("starting moto_server and MariaDB")
    s3 = stack.enter_context(running_moto())
    db = stack.enter_context(running_mariadb("--innodb-buffer-pool-size=512M"))
    docroot = tmp / "site" / "docroot"
    docroot.mkdir(parents=True)
    started = time.perf_counter()
    site = generate_site(docroot, args.size_mb * MB, args.files, rng)
    (docroot / "index.php").write_text(
        f"<?php echo '{MARKER}: ' . count(glob(__DIR__ . '/*')) . ' files, db ' . getenv('BENCH_DB');\n"
    )
    say(f"{site.describe()} ({time.perf_counter() - started:.1f} s)")
    started = time.perf_counter()
    generate_database(db, args.rows)
    say(f"database: {args.rows:,} rows ({time.perf_counter() - started:.1f} s)")

    bench = Bench(work, s3, db, docroot, None, False)
    bench.m_bucket = s3.create_bucket("maintainer")
    bench.r_bucket = f"restic-{os.urandom(6).hex()}"
    bench.client_cnf = work / "client.cnf"
    bench.client_cnf.write_text(
        f"[client]\nuser=bench\npassword=bench-pw-1\nhost={db.host}\nport={db.port}\n"
    )
    bench.client_cnf.chmod(0o600)
    bench.restic_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
        "RESTIC_REPOSITORY": f"s3:{s3.endpoint_url}/{bench.r_bucket}", "RESTIC_PASSWORD": RESTIC_PASSWORD,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "RESTIC_CACHE_DIR": str(work / "restic-cache"),
    }  # fmt: skip
    bench.restic("init", name="init")
    say("backup: maintainer")
    bench.maintainer("backup")
    say("backup: restic")
    bench.restic_backup()

    say("drill: maintainer (restore, verify, serve, clean up)")
    record = drill(bench)
    say("bare restore: restic (files, then the dump into a new database)")
    restic = bench.restic_restore(tmp / "restore-restic", f"{DB_NAME}_rr")
    report(args, site.describe(), record, restic)


def report(args: argparse.Namespace, described: str, record: dict[str, Any], restic: Any) -> None:
    print()
    print(described)
    print(f"database: {args.rows:,} rows; restic {restic_version()}; both against the same moto server")
    print(f"drill outcome: {record['outcome']}" + (f" ({record['failure']})" if record["failure"] else ""))
    print(f"  verified {record['files_verified']:,} files, {mb(record['bytes_restored'])}, "
          f"{record['tables_verified']} tables; home page {record['smoke']}")  # fmt: skip
    print("  stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in record["timings"].items()))
    print(f"  cleanup: {record['cleanup']}")
    rto = record["rto_seconds"]
    if rto is None or record["smoke"] is None:
        # an RTO without the smoke test would not be "verified and serving"
        print(f"the drill did not serve the copy ({record.get('smoke_skipped') or record['failure']}): no RTO")
        return
    x = rto / restic.seconds
    print()
    print(f"{'metric':38} {'maintainer':>12} {'restic':>10} {'m/r':>6}  goal    met?")
    print(f"{'RTO: verified drill vs bare restore':38} {rto:10.2f} s {restic.seconds:8.2f} s {x:6.2f}  "
          f"<= {GOAL}x  {'yes' if x <= GOAL else 'NO'}")  # fmt: skip
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in restic.parts.items())
    print(f"restic's parts: {parts}; the drill's cleanup ({record['timings'].get('cleanup', 0):.2f} s) "
          "comes after the RTO")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="site size in MiB")
    parser.add_argument("--files", type=int, default=30_000, help="number of files in the site")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the database's big table")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 MB, 5,000 files, 100,000 rows")
    args = parser.parse_args()
    if args.quick:
        args.size_mb, args.files, args.rows = 100, 5_000, 100_000
    run_bench(
        benchmark, args, "bench/drill.py needs root: it starts throwaway servers", ("restic", "mariadb-install-db", "php")
    )


if __name__ == "__main__":
    main()
