"""The built-in actions against real things: an HTTP server on loopback, real files, real commands."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from maintainer.actions.http_check import HttpCheckAction, HttpCheckArgs
from maintainer.actions.shell import ShellAction, ShellArgs
from maintainer.actions.template import TemplateAction, TemplateArgs
from maintainer.errors import StepFailed
from maintainer.testing import action_context


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/ok":
            self._send(200, b"<h1>Welcome to Shop</h1>")
        elif self.path == "/fatal":
            self._send(500, b"PHP Fatal error: Uncaught Error")
        elif self.path == "/slow":
            time.sleep(0.4)
            self._send(200, b"slow but fine")
        elif self.path == "/flaky":
            self._send(
                503 if self.hits[self.path] < 3 else 200,
                b"maintenance" if self.hits[self.path] < 3 else b"back",
            )
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.end_headers()
        else:
            self._send(404, b"not found")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _check(tmp_path: Path, **kwargs: object) -> dict[str, object]:
    return HttpCheckAction().run(action_context(tmp_path), HttpCheckArgs(**kwargs)).outputs


def test_http_check_status_and_marker(web: str, tmp_path: Path) -> None:
    outputs = _check(tmp_path, url=f"{web}/ok", contains="Welcome")
    assert outputs["status"] == 200 and outputs["bytes"] == 24
    with pytest.raises(StepFailed, match="lacks 'Checkout'"):
        _check(tmp_path, url=f"{web}/ok", contains=["Welcome", "Checkout"])
    with pytest.raises(StepFailed, match="answered 500, expected 200"):
        _check(tmp_path, url=f"{web}/fatal")
    assert _check(tmp_path, url=f"{web}/fatal", status=[500], contains="Fatal")["status"] == 500
    with pytest.raises(StepFailed, match="contains 'Fatal error'"):
        _check(tmp_path, url=f"{web}/fatal", status=500, not_contains="Fatal error")


def test_http_check_timing_retries_redirects(web: str, tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=r"more than 0\.1s"):
        _check(tmp_path, url=f"{web}/slow", max_seconds=0.1)
    assert _check(tmp_path, url=f"{web}/flaky", retries=3, delay=0.05)["status"] == 200
    assert _check(tmp_path, url=f"{web}/redirect")["status"] == 200
    assert _check(tmp_path, url=f"{web}/redirect", follow_redirects=False, status=302)["status"] == 302


def test_http_check_unreachable_names_the_url(tmp_path: Path) -> None:
    from tests.servers.sshd import free_port

    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(StepFailed, match=f"GET {url} failed: .*refused"):
        _check(tmp_path, url=url, timeout=2)


def test_shell_argv_is_not_interpreted_by_a_shell(tmp_path: Path) -> None:
    ctx = action_context(tmp_path)
    out = ShellAction().run(ctx, ShellArgs(command=["echo", "$(id)", "; rm -rf /"])).outputs
    assert out["stdout"] == "$(id) ; rm -rf /\n"
    out = (
        ShellAction()
        .run(ctx, ShellArgs(command="echo $GREETING; pwd", env={"GREETING": "it's"}, cwd=str(tmp_path)))
        .outputs
    )
    assert out["stdout"] == f"it's\n{tmp_path}\n"
    assert ShellAction().run(ctx, ShellArgs(command="exit 3", ok_codes=[0, 3])).outputs["rc"] == 3


def _template_ctx(tmp_path: Path) -> object:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "app.ini.j2").write_text(
        "name={{ site.name }}\nkeepalive={{ vars.keepalive }}\npassword={{ site.db_password }}\n"
    )
    return action_context(tmp_path, site_vars={"db_password": "s3cret-pw-123"})


def test_template_dry_run_diff_masks_secrets_and_changes_nothing(tmp_path: Path) -> None:
    ctx = _template_ctx(tmp_path)
    dest = tmp_path / "app.ini"
    dest.write_text("name=test-site\nkeepalive=10\npassword=s3cret-pw-123\n")
    preview = TemplateAction().dry_run(
        ctx, TemplateArgs(src="app.ini.j2", dest=str(dest), vars={"keepalive": 65})
    )
    assert "-keepalive=10" in preview["diff"] and "+keepalive=65" in preview["diff"]
    assert "s3cret-pw-123" not in preview["diff"]
    assert dest.read_text().startswith("name=test-site\nkeepalive=10")


def test_template_validate_rejects_before_install(tmp_path: Path) -> None:
    ctx = _template_ctx(tmp_path)
    dest = tmp_path / "app.ini"
    dest.write_text("old\n")
    args = TemplateArgs(
        src="app.ini.j2", dest=str(dest), vars={"keepalive": 65}, validate="grep -q '^keepalive=30$' %s"
    )
    with pytest.raises(StepFailed, match=r"validation of .* failed"):
        TemplateAction().run(ctx, args)
    assert dest.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.ini", "templates"], "no candidate file left"


def test_template_keeps_mode_backs_up_and_undoes(tmp_path: Path) -> None:
    ctx = _template_ctx(tmp_path)
    dest = tmp_path / "app.ini"
    dest.write_text("old\n")
    dest.chmod(0o640)
    action = TemplateAction()
    args = TemplateArgs(src="app.ini.j2", dest=str(dest), vars={"keepalive": 65})
    result = action.run(ctx, args)
    assert result.changed and dest.read_text().startswith("name=test-site\nkeepalive=65")
    assert dest.stat().st_mode & 0o777 == 0o640
    assert Path(result.outputs["backup"]).read_text() == "old\n"
    assert "s3cret" not in str(result.changes)
    again = action.run(ctx, args)
    assert not again.changed, "idempotent"
    assert action.undo(ctx, args, result)
    assert dest.read_text() == "old\n"


def test_template_undo_removes_a_file_it_created(tmp_path: Path) -> None:
    ctx = _template_ctx(tmp_path)
    dest = tmp_path / "new.ini"
    action = TemplateAction()
    args = TemplateArgs(src="app.ini.j2", dest=str(dest), vars={"keepalive": 1})
    result = action.run(ctx, args)
    assert dest.exists() and result.outputs["backup"] is None
    action.undo(ctx, args, result)
    assert not dest.exists()


def test_template_errors_name_the_template_line(tmp_path: Path) -> None:
    ctx = _template_ctx(tmp_path)
    (tmp_path / "templates" / "bad.j2").write_text("ok\n{{ site.nope }}\n")
    with pytest.raises(StepFailed, match=r"bad\.j2"):
        TemplateAction().run(ctx, TemplateArgs(src="bad.j2", dest=str(tmp_path / "x")))
    with pytest.raises(StepFailed, match="not found"):
        TemplateAction().run(ctx, TemplateArgs(src="missing.j2", dest=str(tmp_path / "x")))


@pytest.fixture(scope="module")
def tls_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTPS server on loopback with a self-signed certificate valid for 10 days."""
    import ssl
    import subprocess

    work = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "10", "-subj", "/CN=127.0.0.1",
         "-keyout", str(work / "key.pem"), "-out", str(work / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(work / "cert.pem", work / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_check_tls_expiry(tls_web: str, tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="CERTIFICATE_VERIFY_FAILED"):
        _check(tmp_path, url=f"{tls_web}/ok")
    outputs = _check(tmp_path, url=f"{tls_web}/ok", verify_tls=False, min_tls_days=7)
    assert 9 < outputs["tls_days_left"] <= 10
    with pytest.raises(StepFailed, match=r"expires in (9|10)\.\d days \(fewer than 30\)"):
        _check(tmp_path, url=f"{tls_web}/ok", verify_tls=False, min_tls_days=30)


def test_template_mode_is_applied_even_when_the_content_matches_and_undo_restores_it(tmp_path: Path) -> None:
    ctx = _template_ctx(tmp_path)
    dest = tmp_path / "app.ini"
    action = TemplateAction()
    dest.write_text("name=test-site\nkeepalive=65\npassword=s3cret-pw-123\n")
    dest.chmod(0o644)
    args = TemplateArgs(src="app.ini.j2", dest=str(dest), vars={"keepalive": 65}, mode="0640")
    result = action.run(ctx, args)
    assert result.changed, "same content, new mode: still a change"
    assert dest.stat().st_mode & 0o777 == 0o640
    assert result.changes[0]["before_mode"] == "0644" and result.changes[0]["after_mode"] == "0640"
    assert action.undo(ctx, args, result)
    assert dest.stat().st_mode & 0o777 == 0o644, "rollback restores the mode, not only the content"


def test_template_dry_run_refuses_a_destination_it_could_not_write(tmp_path: Path) -> None:
    ctx = _template_ctx(tmp_path)
    args = TemplateArgs(src="app.ini.j2", dest=str(tmp_path / "missing" / "app.ini"), vars={"keepalive": 1})
    with pytest.raises(StepFailed, match="not a writable directory"):
        TemplateAction().dry_run(ctx, args)
