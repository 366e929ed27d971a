"""Site trees and their fingerprints for the backup tests."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

#: names that break naive scripts: spaces, quotes, a leading dash, non-ASCII, glob characters,
#: a newline, a backslash and a colon
ODD_NAMES = [
    "with space.txt",
    "quote'and\"dq.txt",
    "-starts-with-dash.php",
    "grüße 日本.html",
    "star*[x].css",
    "new\nline.txt",
    "back\\slash:colon.txt",
]


def make_site(root: Path, *, small: int = 60, big_bytes: int = 600_000) -> Path:
    """A docroot with small text files, an incompressible file, odd names, a symlink, an empty dir, a cache."""
    (root / "wp-content" / "uploads" / "2026").mkdir(parents=True, exist_ok=True)
    (root / "wp-content" / "cache").mkdir(parents=True, exist_ok=True)
    (root / "empty-dir").mkdir(exist_ok=True)
    (root / "index.php").write_text("<?php echo 'Example Site';\n")
    for i in range(small):
        (root / "wp-content" / f"file{i:03}.php").write_text(f"<?php // file {i}\n" + "x = 1;\n" * (i % 40))
    (root / "wp-content" / "uploads" / "2026" / "photo.jpg").write_bytes(os.urandom(big_bytes))
    for name in ODD_NAMES:
        (root / name).write_text(f"odd {name}\n")
    long_dir = root / ("d" * 120) / ("e" * 120)
    long_dir.mkdir(parents=True, exist_ok=True)
    (long_dir / ("f" * 100 + ".txt")).write_text("a long path (GNU long names)\n")
    (root / "wp-content" / "cache" / "page.html").write_text("cached, excluded\n")
    (root / "debug.log").write_text("excluded by *.log\n")
    os.symlink("index.php", root / "link-to-index")
    (root / "private.key").write_text("mode 600\n")
    (root / "private.key").chmod(0o600)
    return root


def fingerprint(root: Path, exclude: tuple[str, ...] = ("wp-content/cache", "debug.log")) -> dict[str, Any]:
    """path -> (type, mode, sha256 or link target) for everything under ``root``, minus ``exclude``."""
    found: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if any(rel == e or rel.startswith(e + "/") for e in exclude):
                continue
            if full.is_symlink():
                found[rel] = ("symlink", os.readlink(full))
            elif full.is_dir():
                found[rel] = ("dir", full.stat().st_mode & 0o7777)
            else:
                found[rel] = (
                    "file",
                    full.stat().st_mode & 0o7777,
                    hashlib.sha256(full.read_bytes()).hexdigest(),
                )
    return found


def chown_tree(root: Path, user: str) -> None:
    shutil.chown(root, user, user)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(Path(dirpath) / name, *_ids(user))


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def table_checksums(db: Any, name: str | None = None) -> dict[str, str]:
    """``CHECKSUM TABLE`` of every base table, as root (independent of the code under test)."""
    database = name or db.name
    tables = db.server.sql(
        "SELECT TABLE_NAME FROM information_schema.TABLES "
        f"WHERE TABLE_SCHEMA = '{database}' AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
    ).split("\n")
    result = {}
    for table in filter(None, tables):
        quoted = "`" + table.replace("`", "``") + "`"
        line = db.server.sql(f"CHECKSUM TABLE {quoted}", database).strip().split("\t")
        count = db.server.sql(f"SELECT COUNT(*) FROM {quoted}", database).strip()
        result[table] = f"{line[-1]}/{count}"
    return result
