"""``health_check`` against a real HTTP server on loopback (a small stdlib server whose answers the
test sets: status, body, delay) and a real error-log file: URLs, marker, fatal texts, the speed
baseline, and the error log read from the baseline's offset."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from maintainer.actions.health_check import HealthCheckAction, HealthCheckArgs, settings_for
from maintainer.errors import BadInput, StepFailed
from maintainer.inventory import Site
from maintainer.testing import action_context


@dataclass
class Pages:
    """What the server answers, per path: (status, body, delay in seconds)."""

    answers: dict[str, tuple[int, str, float]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)


@pytest.fixture
def web() -> Iterator[tuple[str, Pages]]:
    pages = Pages({"/": (200, "<title>Shop</title> welcome", 0.0), "/cart": (200, "Shop cart", 0.0)})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            pages.hits.append(self.path)
            status, body, delay = pages.answers.get(self.path, (404, "not found", 0.0))
            time.sleep(delay)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", pages
    finally:
        server.shutdown()
        server.server_close()


def check(tmp_path: Path, site_vars: dict[str, Any], **args: Any) -> dict[str, Any]:
    ctx = action_context(tmp_path, site_vars=site_vars)
    return HealthCheckAction().run(ctx, HealthCheckArgs(**args)).outputs


def test_several_urls_marker_and_baseline_outputs(tmp_path: Path, web: tuple[str, Pages]) -> None:
    url, pages = web
    log = tmp_path / "php-error.log"
    log.write_text("[old] PHP Fatal error: from last week\n")
    site = {"site_url": url, "health_urls": ["/", "cart"], "health_marker": "Shop", "php_error_log": str(log)}
    outputs = check(tmp_path, site, samples=3)
    assert outputs["ok"] is True
    assert [u["url"] for u in outputs["urls"]] == [url, url + "cart"]
    assert pages.hits.count("/cart") == 3
    # the old fatal error is not new: the baseline records where the log ends now
    assert outputs["error_log"] == {"path": str(log), "size": log.stat().st_size, "exists": True}

    pages.answers["/cart"] = (200, "an empty page", 0.0)
    with pytest.raises(StepFailed, match="cart body lacks 'Shop'"):
        check(tmp_path, site, samples=1)
    pages.answers["/cart"] = (500, "Shop <b>Fatal error</b>: Uncaught Error", 0.0)
    with pytest.raises(StepFailed, match="cart answered 500"):
        check(tmp_path, site, samples=1)
    pages.answers["/cart"] = (200, "Shop <b>Parse error</b>: syntax error", 0.0)
    with pytest.raises(StepFailed, match="body contains 'Parse error'"):
        check(tmp_path, site, samples=1)


def test_slower_than_the_baseline_fails_within_the_slack_passes(
    tmp_path: Path, web: tuple[str, Pages]
) -> None:
    url, pages = web
    site = {"site_url": url}
    baseline = check(tmp_path, site, samples=3)
    pages.answers["/"] = (200, "<title>Shop</title>", 0.3)
    # 0.3 s is within 3x a ~1 ms baseline + 0.5 s slack
    assert check(tmp_path, site, samples=3, baseline=baseline)["ok"] is True
    with pytest.raises(StepFailed, match=r"got slower: median 0\.3") as failed:
        check(tmp_path, site, samples=3, baseline=baseline, slack=0.1)
    slow: Any = failed.value.outputs["urls"]
    assert slow[0]["baseline"] == baseline["urls"][0]["median"]


def test_only_new_fatal_errors_in_the_log_fail_and_are_quoted(tmp_path: Path, web: tuple[str, Pages]) -> None:
    url, _ = web
    log = tmp_path / "php-error.log"
    log.write_text("[before] PHP Fatal error: old news\n")
    site = {"site_url": url, "php_error_log": str(log)}
    baseline = check(tmp_path, site, samples=1)
    with log.open("a") as out:
        out.write("[after] PHP Warning: harmless\n")
    assert check(tmp_path, site, samples=1, baseline=baseline)["ok"] is True
    with log.open("a") as out:
        out.write("[after] PHP Fatal error:  Uncaught Error: Call to undefined function nope()\n")
    with pytest.raises(StepFailed, match=r"1 new fatal error\(s\) in .*undefined function nope") as failed:
        check(tmp_path, site, samples=1, baseline=baseline)
    assert failed.value.outputs["new_errors"] == [
        "[after] PHP Fatal error:  Uncaught Error: Call to undefined function nope()"
    ]
    # 'since' moves the offset past what an earlier check already judged
    since = {"path": str(log), "size": log.stat().st_size}
    assert check(tmp_path, site, samples=1, baseline=baseline, since=since)["ok"] is True
    # a rotated (shorter) log is read from its start
    log.write_text("PHP Parse error: in the new file\n")
    with pytest.raises(StepFailed, match="PHP Parse error"):
        check(tmp_path, site, samples=1, baseline=baseline, since=since)


def test_wordpress_debug_log_is_read_only_when_it_exists_and_paths_need_a_site_url(tmp_path: Path) -> None:
    docroot = tmp_path / "site"
    (docroot / "wp-content").mkdir(parents=True)
    site = Site(
        "wp", {"cms": "wordpress", "docroot": str(docroot), "site_url": "https://example.test/shop/"}, []
    )
    resolved = settings_for(site, HealthCheckArgs(urls=["/", "cart"]))
    assert resolved.urls == ["https://example.test/shop/", "https://example.test/shop/cart"]
    assert resolved.error_log == f"{docroot}/wp-content/debug.log"
    with pytest.raises(BadInput, match="no site_url"):
        settings_for(Site("x", {"health_urls": ["/"]}, []), HealthCheckArgs())
