"""A fixed short HTTP load from the controller, and the before/after verdict on two of them.

``run()`` sends ``warmup`` requests (not measured: they fill caches, start workers, compile
PHP), then ``requests`` more from ``concurrency`` threads, each over its own keep-alive
connection as a browser would. TTFB is the time from sending a request to its status line and
headers (with the connect when the connection is new); requests per second counts the
measured requests over the wall time they took. Every answer must have the expected status
(and marker): a fast error page is no speed-up, it is an error.
"""

from __future__ import annotations

import http.client
import math
import ssl
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

#: latency metrics: lower is better; everything else (rps): higher is better
LATENCY = ("ttfb_p50_ms", "ttfb_p95_ms", "ttfb_max_ms")
METRICS = (*LATENCY, "rps")
LABELS = {"ttfb_p50_ms": "TTFB p50", "ttfb_p95_ms": "TTFB p95", "ttfb_max_ms": "TTFB max", "rps": "req/s"}
_MAX_BODY = 16 * 1024 * 1024


@dataclass
class Load:
    url: str
    requests: int = 100
    concurrency: int = 4
    warmup: int = 10
    timeout: float = 10.0
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    status: tuple[int, ...] = (200,)
    contains: str | None = None
    verify_tls: bool = True


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (p95 of 20 values is the 19th)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class _Client:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, load: Load) -> None:
        parts = urlsplit(load.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {load.url}")
        self.load = load
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            context = ssl.create_default_context()
            if not self.load.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.load.timeout, context=context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.load.timeout)

    def fetch(self) -> tuple[float, int]:
        """One request: (TTFB in seconds, body bytes). Raises ValueError on a wrong answer."""
        if self.conn is None:
            self.conn = self._connect()
        started = time.perf_counter()
        try:
            self.conn.request(self.load.method, self.path, headers=self.load.headers)
            response = self.conn.getresponse()
            ttfb = time.perf_counter() - started
            body = response.read(_MAX_BODY)
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.will_close:
            self.close()
        if response.status not in self.load.status:
            raise ValueError(f"HTTP {response.status}")
        if self.load.contains is not None:
            text = body
            if response.getheader("Content-Encoding", "").lower() == "gzip":
                text = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            if self.load.contains.encode() not in text:
                raise ValueError(f"the body lacks '{self.load.contains}'")
        return ttfb, len(body)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run(load: Load, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Warm up, then measure: TTFB p50/p95/max (ms), rps, errors and what an answer weighs."""
    cancel = cancel or threading.Event()
    lock = threading.Lock()
    ttfbs: list[float] = []
    sizes: list[int] = []
    errors: list[str] = []
    todo = {"warmup": load.warmup, "measured": load.requests}

    def worker(phase: str, client: _Client) -> None:
        while not cancel.is_set():
            with lock:
                if todo[phase] == 0:
                    return
                todo[phase] -= 1
            try:
                ttfb, size = client.fetch()
            except (OSError, http.client.HTTPException, ValueError, zlib.error) as exc:
                with lock:
                    errors.append(
                        f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
                    )
                continue
            if phase == "measured":
                with lock:
                    ttfbs.append(ttfb)
                    sizes.append(size)

    clients = [_Client(load) for _ in range(load.concurrency)]
    warmup_errors: list[str] = []
    try:
        seconds = 0.0
        for phase in ("warmup", "measured"):
            if phase == "measured":
                warmup_errors, errors[:] = list(errors), []
            threads = [threading.Thread(target=worker, args=(phase, c), daemon=True) for c in clients]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
    finally:
        for client in clients:
            client.close()
    ttfbs.sort()
    ms = [v * 1000 for v in ttfbs]
    return {
        "url": load.url,
        "requests": load.requests,
        "concurrency": load.concurrency,
        "warmup": load.warmup,
        "ok": len(ttfbs),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "warmup_errors": len(warmup_errors),
        "ttfb_p50_ms": round(percentile(ms, 0.50), 2),
        "ttfb_p95_ms": round(percentile(ms, 0.95), 2),
        "ttfb_max_ms": round(ms[-1], 2) if ms else 0.0,
        "rps": round(len(ttfbs) / seconds, 2) if seconds > 0 else 0.0,
        "seconds": round(seconds, 3),
        "bytes": round(sum(sizes) / len(sizes)) if sizes else 0,
    }


def describe(figures: dict[str, Any]) -> str:
    return (
        f"TTFB p50 {figures['ttfb_p50_ms']:.1f} ms, p95 {figures['ttfb_p95_ms']:.1f} ms, "
        f"{figures['rps']:.1f} req/s"
    )


def compare(
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    threshold_percent: float,
    metrics: Iterable[str] = ("ttfb_p50_ms", "ttfb_p95_ms", "rps"),
    min_ms: float = 2.0,
) -> dict[str, Any]:
    """Each metric before and after, its change in percent and whether it got worse beyond the threshold.

    A latency that rose by less than ``min_ms`` never counts as worse (noise on a fast page).
    """
    result: dict[str, Any] = {}
    for name in metrics:
        if name not in before or name not in after:
            raise KeyError(name)
        old, new = float(before[name]), float(after[name])
        change = (new - old) / old * 100 if old else 0.0
        if name in LATENCY:
            worse = new > old * (1 + threshold_percent / 100) and new - old >= min_ms
        else:
            worse = new < old * (1 - threshold_percent / 100)
        result[name] = {"before": old, "after": new, "change_percent": round(change, 1), "worse": worse}
    return result


def describe_changes(changes: dict[str, Any]) -> str:
    """``TTFB p50 40.0 -> 120.0 ms (+200.0%), req/s 25.0 -> 8.0 (-68.0%)``"""
    parts = []
    for name, c in changes.items():
        unit = " ms" if name in LATENCY else ""
        change = f"{c['change_percent']:+.1f}%"
        parts.append(f"{LABELS.get(name, name)} {c['before']:.1f} -> {c['after']:.1f}{unit} ({change})")
    return ", ".join(parts)
