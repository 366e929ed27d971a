"""``http_check``: fetch a URL from the controller and judge the answer."""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

from pydantic import Field

from ..errors import StepFailed
from .base import Action, ActionResult, Args, StepContext

_MAX_BODY = 4 * 1024 * 1024  # enough for any page we check; bounded memory


class HttpCheckArgs(Args):
    url: str
    status: int | list[int] = 200
    contains: str | list[str] | None = None
    not_contains: str | list[str] | None = None
    max_seconds: float | None = Field(default=None, gt=0)
    retries: int = Field(default=0, ge=0, le=100)
    delay: float = Field(default=2.0, ge=0)
    timeout: float = Field(default=10.0, gt=0)
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True
    follow_redirects: bool = True
    #: https only: fail when the certificate expires in fewer days than this
    min_tls_days: int | None = Field(default=None, ge=0)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class HttpCheckAction(Action):
    name = "http_check"
    Args = HttpCheckArgs
    summary = "HTTP request from the controller: status, body markers, response time"

    def dry_run(self, ctx: StepContext, args: HttpCheckArgs) -> dict[str, Any]:
        return {"would_fetch": args.url, "expect_status": args.status}

    def run(self, ctx: StepContext, args: HttpCheckArgs) -> ActionResult:
        attempts = args.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._check_once(args)
            except StepFailed as exc:
                if attempt == attempts or ctx.cancel.is_set():
                    if attempts > 1:
                        exc.args = (f"{exc.args[0]} (after {attempts} attempts)",)
                    raise
                ctx.log(f"http_check attempt {attempt}/{attempts} failed: {exc}; retrying")
                ctx.cancel.wait(args.delay)
        raise AssertionError("unreachable")

    def _check_once(self, args: HttpCheckArgs) -> ActionResult:
        handlers: list[Any] = []
        if not args.follow_redirects:
            handlers.append(_NoRedirect())
        if args.url.startswith("https") and not args.verify_tls:
            handlers.append(urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
        opener = urllib.request.build_opener(*handlers)
        request = urllib.request.Request(args.url, method=args.method, headers=args.headers)
        started = time.monotonic()
        try:
            with opener.open(request, timeout=args.timeout) as response:
                # file:// (a local static site) has no status: reading it is a 200
                status = response.status if response.status is not None else 200
                body = response.read(_MAX_BODY)
        except urllib.error.HTTPError as exc:
            status = exc.code
            body = exc.read(_MAX_BODY) if exc.fp else b""
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise StepFailed(f"GET {args.url} failed: {reason}") from exc
        seconds = time.monotonic() - started
        text = body.decode("utf-8", "replace")
        outputs = {"url": args.url, "status": status, "seconds": round(seconds, 4), "bytes": len(body)}
        expected = [args.status] if isinstance(args.status, int) else args.status
        if status not in expected:
            raise StepFailed(
                f"{args.url} answered {status}, expected {' or '.join(map(str, expected))}", outputs=outputs
            )
        for marker in _as_list(args.contains):
            if marker not in text:
                raise StepFailed(f"{args.url} body lacks '{marker}'", outputs=outputs)
        for marker in _as_list(args.not_contains):
            if marker in text:
                raise StepFailed(f"{args.url} body contains '{marker}'", outputs=outputs)
        if args.max_seconds is not None and seconds > args.max_seconds:
            raise StepFailed(
                f"{args.url} took {seconds:.2f}s, more than {args.max_seconds:g}s", outputs=outputs
            )
        if args.min_tls_days is not None and args.url.startswith("https://"):
            days = tls_days_left(args.url, args.timeout)
            outputs["tls_days_left"] = round(days, 1)
            if days < args.min_tls_days:
                raise StepFailed(
                    f"the TLS certificate of {args.url} expires in {days:.1f} days "
                    f"(fewer than {args.min_tls_days})",
                    outputs=outputs,
                )
        return ActionResult(outputs=outputs)


def tls_days_left(url: str, timeout: float) -> float:
    """Days until the server's certificate expires (read even when it would not verify)."""
    import socket
    from datetime import UTC, datetime
    from urllib.parse import urlsplit

    from cryptography import x509

    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we only read the expiry date; the request itself verified
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise StepFailed(f"could not read the TLS certificate of {host}:{port}: {exc}") from exc
    if not der:
        raise StepFailed(f"{host}:{port} sent no TLS certificate")
    expires = x509.load_der_x509_certificate(der).not_valid_after_utc
    return (expires - datetime.now(UTC)).total_seconds() / 86400
