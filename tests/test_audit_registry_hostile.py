"""Issue #20, items 8-11 and 13: a hostile registry on loopback, real HTTP (and TLS) through the real binary.

Each server is a small http.server on port 0 whose answers a test sets: it
records every request (path and Authorization header), so a test can say what
was (not) sent where.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_audit import audit

from testkit.audit_builder import TestImage, all_forms

Answer = Callable[[http.server.BaseHTTPRequestHandler], None]
NETRC_PASSWORD = "NetrcPassw0rd-never-sent"
USER, PASSWORD = "auditor", "Regist0ryPass-x9"


class Server:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.answers: dict[str, Answer] = {}
        self.seen: list[tuple[str, str | None]] = []  # (path, Authorization)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.seen.append((self.path, self.headers.get("Authorization")))
                path = self.path.split("?", 1)[0]
                answer = outer.answers.get(path) or outer.answers.get("*")
                if answer is None:
                    send(self, 404, b'{"errors": []}')
                else:
                    answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **headers}.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def ok(handler: http.server.BaseHTTPRequestHandler) -> None:
    send(handler, 200, b"{}", Content_Type="application/json")


@pytest.fixture
def registry() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / ".netrc").write_text(f"machine 127.0.0.1 login someone password {NETRC_PASSWORD}\n")
    (home / ".netrc").chmod(0o600)
    keep = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "REGISTRY_AUTH_FILE", "NETRC")}
    return {**keep, "HOME": str(home)}


def _one_line(result: object, code: int, fragment: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert fragment in lines[0], lines[0]
    return lines[0]


# -- 9. nothing is sent unasked --------------------------------------------------------------------


def test_netrc_is_never_sent(tmp_path: Path, registry: Server) -> None:
    registry.answers["/v2/"] = ok
    redirect_target = Server()
    try:
        redirect_target.answers["*"] = ok
        registry.answers["/v2/app/manifests/latest"] = lambda h: send(
            h, 307, Location=f"http://{redirect_target.host}/elsewhere"
        )
        result = audit(f"docker://{registry.host}/app:latest", env=_env(tmp_path))
        assert result.returncode in (65, 66, 69), result.stderr
        assert registry.seen and redirect_target.seen  # the first request and the redirect both happened
        for _, authorization in registry.seen + redirect_target.seen:
            assert authorization is None, authorization  # requests' trust_env would have sent ~/.netrc
    finally:
        redirect_target.close()


# -- 10. the realm is parsed, not sliced --------------------------------------------------------------


@pytest.mark.parametrize(
    ("realm", "fragment"),
    [
        ("http://localhost:1@evil.example/token", "user name or password"),
        ("https://user:pw@127.0.0.1:1/token", "user name or password"),
        ("http://192.0.2.1/token", "plain http"),
        ("https://[::1/token", "not a usable URL"),
        ("file:///etc/passwd", "not an http(s) URL"),
    ],
)
def test_a_bad_realm_is_refused_before_anything_is_sent(
    tmp_path: Path, registry: Server, realm: str, fragment: str
) -> None:
    registry.answers["/v2/"] = lambda h: send(h, 401, WWW_Authenticate=f'Bearer realm="{realm}",service="reg"')
    started = time.monotonic()
    result = audit("--creds", f"{USER}:{PASSWORD}", f"docker://{registry.host}/app:latest", env=_env(tmp_path))
    _one_line(result, 69, fragment)
    assert time.monotonic() - started < 60  # refused at once: no connection to evil.example retried 4 times


# -- 11. --tls-verify=false covers the loopback registry only -------------------------------------------


def test_tls_verify_false_does_not_cover_an_off_origin_realm(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    contexts = []
    for _ in range(2):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)  # signed by a CA the client does not trust
        contexts.append(context)
    registry, realm = Server(contexts[0]), Server(contexts[1])
    try:
        registry.answers["/v2/"] = lambda h: send(
            h, 401, WWW_Authenticate=f'Bearer realm="https://{realm.host}/token",service="reg"'
        )
        realm.answers["/token"] = lambda h: send(h, 200, json.dumps({"token": "t0ken-value"}).encode())
        result = audit(
            "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", f"docker://{registry.host}/app:latest",
            env=_env(tmp_path),
        )  # fmt: skip
        _one_line(result, 69, "TLS failed")
        assert registry.seen  # the loopback registry itself was reached without verification
        assert realm.seen == []  # the realm's certificate was checked, and failed: the password never left
    finally:
        registry.close()
        realm.close()


# -- 13. hostile answers: one line, 65 or 69, and the other targets still audited -------------------------


def _deep(handler: http.server.BaseHTTPRequestHandler) -> None:
    send(handler, 200, b"[" * 200_000 + b"]" * 200_000, Content_Type="application/vnd.oci.image.manifest.v1+json")


HOSTILE: dict[str, tuple[Callable[[Server], dict[str, Answer]], int, str]] = {
    "token-with-crlf": (
        lambda s: {
            "/v2/": lambda h: send(h, 401, WWW_Authenticate=f'Bearer realm="http://{s.host}/token",service="r"'),
            "/token": lambda h: send(h, 200, json.dumps({"token": "abc\r\nX-Injected: 1"}).encode()),
        },
        69,
        "malformed token",
    ),
    "redirect-loop": (
        lambda s: {"/v2/": ok, "/v2/app/manifests/latest": lambda h: send(h, 307, Location="/v2/app/manifests/latest")},
        69,
        "redirects",
    ),
    "file-redirect": (
        lambda s: {"/v2/": ok, "/v2/app/manifests/latest": lambda h: send(h, 307, Location="file:///etc/passwd")},
        69,
        "not an http(s) URL",
    ),
    "deep-json": (lambda s: {"/v2/": ok, "/v2/app/manifests/latest": _deep}, 65, "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_answer_is_one_line_and_the_other_targets_are_reported(
    tmp_path: Path, registry: Server, case: str
) -> None:
    answers, code, fragment = HOSTILE[case]
    registry.answers.update(answers(registry))
    clean = all_forms(TestImage(layers=[{"a.txt": "hello"}]), tmp_path / "clean")["oci"]
    result = audit("--format", "json", f"docker://{registry.host}/app:latest", clean, env=_env(tmp_path))
    _one_line(result, code, fragment)
    targets = json.loads(result.stdout)["targets"]
    assert [t["clean"] for t in targets] == [False, True] and targets[0]["error"]


# -- 8. a registry that drips bytes meets the target's deadline ------------------------------------------


def test_a_dripping_registry_fails_at_the_deadline(tmp_path: Path, registry: Server) -> None:
    stop = threading.Event()

    def drip(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        try:
            while not stop.is_set():
                handler.wfile.write(b" ")
                handler.wfile.flush()
                stop.wait(0.2)  # the attack is the pace; the event only ends it when the test is done
        except OSError:
            pass  # the audit hung up: that is the point

    registry.answers.update({"/v2/": ok, "/v2/app/manifests/latest": drip})
    started = time.monotonic()
    try:
        result = audit("--registry-timeout", "5", f"docker://{registry.host}/app:latest", env=_env(tmp_path))
    finally:
        stop.set()
    _one_line(result, 69, "--registry-timeout")
    assert time.monotonic() - started < 120  # 100,000 bytes at 5 a second would take 5.5 hours


def test_a_bad_registry_timeout_is_a_usage_error(tmp_path: Path) -> None:
    result = audit("--registry-timeout", "soon", "docker://127.0.0.1:1/app", env=_env(tmp_path))
    _one_line(result, 64, "--registry-timeout")
