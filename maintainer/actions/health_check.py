"""``health_check``: is the site really serving? Several URLs, a content marker, speed, the PHP error log.

A status code alone misses what breaks sites after an update: a white screen that answers 200, a
page twice as slow, a plugin that logs a fatal error on every request to another page. So:

- every URL of the site's ``health_urls`` var (paths join ``site_url``; default: ``site_url``)
  answers with the expected status, carries the ``health_marker`` (site var) and none of the texts
  PHP and WordPress print for a fatal error (``FATAL_TEXTS``);
- the median response time of ``samples`` fetches per URL stays within ``max_slowdown`` times the
  ``baseline`` (the outputs of an earlier health_check, e.g. the preflight), plus ``slack`` seconds
  for the noise of fast pages;
- the PHP error log (site var ``php_error_log``, a path on the site's host; for WordPress
  ``<docroot>/wp-content/debug.log`` when it exists) has no new "PHP Fatal error" / "PHP Parse
  error" line since the baseline's recorded size (``error_log: {path, size}`` in the outputs).

The fetching is http_check's (imported, not copied). ``check_health`` is the library function that
``cms.update``'s one_by_one path calls between plugin updates.
"""

from __future__ import annotations

import re
import shlex
import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from pydantic import Field

from ..errors import BadInput, StepFailed
from ..transport import Transport
from .base import Action, ActionResult, Args, StepContext
from .http_check import HttpCheckAction, HttpCheckArgs

if TYPE_CHECKING:
    from ..inventory import Site

#: what a broken PHP page says (PHP's display_errors, WordPress's fatal error handler)
FATAL_TEXTS = ("Fatal error", "Parse error", "There has been a critical error")
#: what a new line of the error log must not say
LOG_FATALS = ("PHP Fatal error", "PHP Parse error")
#: how much of the appended error log is read (bounded: a log flooding with notices)
LOG_READ_LIMIT = 1024 * 1024
URLS_VAR, MARKER_VAR, LOG_VAR = "health_urls", "health_marker", "php_error_log"


class HealthCheckArgs(Args):
    #: URLs or paths (joined to the site's site_url); default: the site var health_urls, else site_url
    urls: list[str] | None = None
    #: text every page must contain; default: the site var health_marker (none when unset)
    marker: str | None = None
    status: int | list[int] = 200
    #: fetches per URL; the median is compared with the baseline
    samples: int = Field(default=3, ge=1, le=50)
    #: the outputs of an earlier health_check (the preflight): its times and error-log size
    baseline: dict[str, Any] | None = None
    max_slowdown: float = Field(default=3.0, ge=1.0)
    #: seconds allowed on top of max_slowdown x baseline (fast pages vary by more than their factor)
    slack: float = Field(default=0.5, ge=0)
    #: the PHP error log on the site's host; default: the site var php_error_log (WordPress: debug.log)
    error_log: str | None = None
    #: read the error log from this position ({path, size}: an earlier check's ``error_log`` output)
    #: instead of the baseline's; e.g. after a one_by_one update that already judged its own errors
    since: dict[str, Any] | None = None
    timeout: float = Field(default=15.0, gt=0)
    #: seconds to wait before the first fetch: PHP's OPcache serves the old code of a file changed
    #: less than ``opcache.revalidate_freq`` (default 2) seconds ago, so a check right after an
    #: update can pass on code that is no longer there
    settle: float = Field(default=0.0, ge=0, le=600)
    #: more attempts for a site that is coming back (after a restore), with ``delay`` seconds between
    retries: int = Field(default=0, ge=0, le=100)
    delay: float = Field(default=2.0, ge=0)


@dataclass
class HealthSettings:
    urls: list[str]
    marker: str | None
    status: list[int]
    samples: int = 3
    max_slowdown: float = 3.0
    slack: float = 0.5
    #: the error log's path (None: no log to read) and whether it was named explicitly
    error_log: str | None = None
    timeout: float = 15.0
    settle: float = 0.0


@dataclass
class HealthReport:
    ok: bool
    problems: list[str] = field(default_factory=list)
    urls: list[dict[str, Any]] = field(default_factory=list)
    error_log: dict[str, Any] | None = None
    new_errors: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        pages = ", ".join(
            f"{u['url']} {u.get('status', '?')} in {u.get('median', 0):.2f}s" for u in self.urls
        )
        if self.ok:
            return f"healthy: {pages or 'no URL'}" + (
                f"; error log {self.error_log['path']}: no new fatal errors" if self.error_log else ""
            )
        return "unhealthy: " + "; ".join(self.problems)

    def record(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": self.summary,
            "problems": self.problems,
            "urls": self.urls,
            "error_log": self.error_log,
            "new_errors": self.new_errors,
        }


def site_urls(site: Site, urls: Sequence[str] | None) -> list[str]:
    """The URLs to check: given, else the site's health_urls, else its site_url (paths join site_url)."""
    base = str(site.vars.get("site_url") or "")
    wanted = list(urls) if urls else site.vars.get(URLS_VAR) or ([base] if base else [])
    if isinstance(wanted, str):
        wanted = [wanted]
    resolved = []
    for value in wanted:
        text = str(value)
        if "://" not in text:
            if not base:
                raise BadInput(
                    f"site '{site.name}': health URL '{text}' is a path, and the site has no site_url "
                    "to join it to.",
                    key=URLS_VAR,
                    fix="set site_url (e.g. https://example.org/) or give full URLs in health_urls.",
                )
            text = urljoin(base.rstrip("/") + "/", text.lstrip("/"))
        resolved.append(text)
    return resolved


def default_error_log(site: Site) -> tuple[str | None, bool]:
    """(path, explicit): the site var php_error_log, else WordPress's debug.log (used if it exists)."""
    if site.vars.get(LOG_VAR):
        return str(site.vars[LOG_VAR]), True
    if site.vars.get("cms") == "wordpress" and site.vars.get("docroot"):
        return f"{str(site.vars['docroot']).rstrip('/')}/wp-content/debug.log", False
    return None, False


def settings_for(site: Site, args: HealthCheckArgs) -> HealthSettings:
    marker = args.marker if args.marker is not None else site.vars.get(MARKER_VAR)
    recorded = (args.baseline or {}).get("error_log") or {}
    path = args.error_log or (recorded.get("path") if isinstance(recorded, dict) else None)
    if not path:
        path, _ = default_error_log(site)
    return HealthSettings(
        urls=site_urls(site, args.urls),
        marker=str(marker) if marker else None,
        status=[args.status] if isinstance(args.status, int) else list(args.status),
        samples=args.samples,
        max_slowdown=args.max_slowdown,
        slack=args.slack,
        error_log=path,
        timeout=args.timeout,
        settle=args.settle,
    )


def _fetch(url: str, settings: HealthSettings) -> dict[str, Any]:
    """One fetch through http_check (status, marker, no fatal text); StepFailed says what is wrong."""
    check = HttpCheckArgs(
        url=url,
        status=settings.status,
        contains=settings.marker,
        not_contains=list(FATAL_TEXTS),
        timeout=settings.timeout,
    )
    return HttpCheckAction()._check_once(check).outputs


def _baseline_median(baseline: dict[str, Any] | None, url: str) -> float | None:
    for item in (baseline or {}).get("urls", []) or []:
        if isinstance(item, dict) and item.get("url") == url and item.get("median") is not None:
            return float(item["median"])
    return None


def log_size(transport: Transport, path: str, timeout: float = 30) -> int | None:
    """The error log's size now (None: it does not exist)."""
    result = transport.run(["stat", "-L", "-c", "%s", "--", path], timeout=timeout)
    if result.rc != 0:
        return None
    try:
        return int(result.stdout.strip())
    except ValueError:
        return None


def read_appended(transport: Transport, path: str, offset: int, timeout: float = 30) -> str:
    """What was appended to ``path`` after ``offset`` bytes (all of it if the file shrank: rotated)."""
    size = log_size(transport, path, timeout)
    if size is None:
        return ""
    start = offset if 0 <= offset <= size else 0
    script = f"tail -c +{start + 1} -- {shlex.quote(path)} | head -c {LOG_READ_LIMIT}"
    result = transport.run(["sh", "-c", script], timeout=timeout)
    return result.stdout


def check_health(
    transport: Transport,
    settings: HealthSettings,
    baseline: dict[str, Any] | None = None,
    *,
    log: Callable[[str], None] = lambda _m: None,
    cancel: threading.Event | None = None,
) -> HealthReport:
    """Fetch every URL ``samples`` times, compare with the baseline, read the new error-log lines."""
    if settings.settle:
        (cancel or threading.Event()).wait(settings.settle)
    report = HealthReport(ok=True)
    for url in settings.urls:
        times: list[float] = []
        entry: dict[str, Any] = {"url": url}
        for _ in range(settings.samples):
            try:
                outputs = _fetch(url, settings)
            except StepFailed as exc:
                report.problems.append(str(exc))
                entry["status"] = exc.outputs.get("status")
                break
            entry["status"] = outputs["status"]
            times.append(float(outputs["seconds"]))
        if times:
            entry["median"] = round(statistics.median(times), 4)
            before = _baseline_median(baseline, url)
            if before is not None:
                entry["baseline"] = before
                allowed = before * settings.max_slowdown + settings.slack
                entry["allowed"] = round(allowed, 4)
                if entry["median"] > allowed:
                    report.problems.append(
                        f"{url} got slower: median {entry['median']:.3f}s over {settings.samples} fetches, "
                        f"baseline {before:.3f}s (allowed {settings.max_slowdown:g}x + {settings.slack:g}s)"
                    )
        report.urls.append(entry)
    if settings.error_log:
        size = log_size(transport, settings.error_log)
        report.error_log = {"path": settings.error_log, "size": size or 0, "exists": size is not None}
        base_log = (baseline or {}).get("error_log") or {}
        if baseline is not None and size is not None and base_log.get("path") == settings.error_log:
            appended = read_appended(transport, settings.error_log, int(base_log.get("size") or 0))
            report.new_errors = [
                line.strip() for line in appended.splitlines() if any(f in line for f in LOG_FATALS)
            ]
            if report.new_errors:
                report.problems.append(
                    f"{len(report.new_errors)} new fatal error(s) in {settings.error_log}: "
                    + describe_fatals(report.new_errors)
                )
    report.ok = not report.problems
    log(report.summary)
    return report


def check_until_healthy(
    transport: Transport,
    settings: HealthSettings,
    baseline: dict[str, Any] | None,
    *,
    retries: int,
    delay: float,
    cancel: threading.Event,
    log: Callable[[str], None] | None = None,
) -> tuple[HealthReport, int]:
    """``check_health``, again after ``delay`` while it fails, up to ``retries`` more times: the last
    report and how many attempts it took. The settle wait comes before the first attempt only."""
    settle = settings.settle
    attempts = retries + 1
    try:
        attempt = 1
        while True:
            report = check_health(transport, settings, baseline, cancel=cancel)
            settings.settle = 0.0  # once is enough: the retries have their delay
            if report.ok or attempt == attempts or cancel.is_set():
                return report, attempt
            if log is not None:
                log(f"health check attempt {attempt}/{attempts}: {report.summary}; again in {delay:g}s")
            cancel.wait(delay)
            attempt += 1
    finally:
        settings.settle = settle


_LOG_STAMP = re.compile(r"^\[[^\]]*\]\s*")
_COMPONENT_DIR = re.compile(r"/(?:wp-content/)?(plugins|themes|modules|extensions)/([^/\s]+)/")


def describe_fatals(lines: list[str], shown: int = 3) -> str:
    """The distinct fatal errors (one request each time repeats the same), with the component they
    come from when the file path says it: ``(x3, plugin broken-plugin) PHP Fatal error: ...``."""
    counts: dict[str, int] = {}
    for line in lines:
        message = _LOG_STAMP.sub("", line)
        counts[message] = counts.get(message, 0) + 1
    parts = []
    for message, count in list(counts.items())[:shown]:
        found = _COMPONENT_DIR.search(message)
        where = f"{found.group(1).rstrip('s')} {found.group(2)}" if found else ""
        tags = ", ".join(filter(None, [f"x{count}" if count > 1 else "", where]))
        parts.append((f"({tags}) " if tags else "") + message[:300])
    more = len(counts) - shown
    return " | ".join(parts) + (f" (and {more} other distinct error(s))" if more > 0 else "")


class HealthCheckAction(Action):
    name = "health_check"
    Args = HealthCheckArgs
    summary = "several URLs (status, marker, no fatal error, speed vs a baseline) and the PHP error log"

    def check_site(self, site: Site, args: HealthCheckArgs, project_dir: Path) -> None:
        if not site_urls(site, args.urls):
            raise BadInput(
                f"site '{site.name}' has no URL to check.",
                key="site_url",
                fix="set the site's site_url, or health_urls (a list of paths or URLs).",
            )

    def dry_run(self, ctx: StepContext, args: HealthCheckArgs) -> dict[str, Any]:
        settings = settings_for(ctx.site, args)
        log = f"; the PHP error log {settings.error_log}" if settings.error_log else ""
        return {
            "summary": f"would fetch {', '.join(settings.urls)} {settings.samples}x each"
            + (f" for '{settings.marker}'" if settings.marker else "")
            + log,
            "urls": settings.urls,
        }

    def run(self, ctx: StepContext, args: HealthCheckArgs) -> ActionResult:
        settings = settings_for(ctx.site, args)
        baseline = args.baseline
        if args.since and args.since.get("path"):
            baseline = {**(baseline or {}), "error_log": args.since}
        attempts = args.retries + 1
        report, attempt = check_until_healthy(
            ctx.transport, settings, baseline, retries=args.retries, delay=args.delay, cancel=ctx.cancel,
            log=ctx.log,
        )  # fmt: skip
        outputs = report.record()
        change = {
            "what": "health_check",
            **{k: outputs[k] for k in ("ok", "summary", "problems", "new_errors")},
        }
        if attempts > 1:
            outputs["attempts"] = attempt
        ctx.log(report.summary)
        if not report.ok:
            raise StepFailed(report.summary, outputs=outputs, changes=[change])
        return ActionResult(outputs=outputs, changes=[change])
