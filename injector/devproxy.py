"""A credential proxy for local dev, demos and tests (SPEC sections 4 and 8).

Serves protocol v1 from a dotenv file of `secret/path=value` lines.  Every
issue mints a fresh token `<value>.<random>` so rotations are visible, with
`ttl = min(requested, --ttl)`.  Standard library only.

`DevProxy` holds the protocol logic apart from HTTP, so tests can run the
same code in a thread on port 0 and inject faults by overriding `answer`.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from injector.config import is_loopback
from injector.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:8787"
DEFAULT_TTL = 300
SESSION_TTL = 3600
MAX_REQUEST = 1024 * 1024


@dataclass
class Answer:
    status: int
    body: object | None = None
    headers: dict[str, str] = field(default_factory=dict)


class DevProxy:
    """Protocol v1 state: sessions, leases, secrets.  Thread-safe."""

    def __init__(
        self, secrets_map: dict[str, str], *, token: str, ttl: int = DEFAULT_TTL, session_ttl: int = SESSION_TTL
    ) -> None:
        self.secrets = dict(secrets_map)
        self.token = token
        self.ttl = ttl
        self.session_ttl = session_ttl
        self.lock = threading.Lock()
        self.sessions: dict[str, float] = {}  # session token -> expiry (monotonic)
        self.leases: dict[str, float] = {}  # lease id -> expiry
        self.revoked: list[str] = []

    def answer(self, method: str, path: str, headers: dict[str, str], body: object) -> Answer:
        if method != "POST":
            return Answer(405, {"error": "use POST"})
        if path == "/v1/auth/login":
            return self.login(body)
        session = _bearer(headers)
        if session is None or not self._session_valid(session):
            return Answer(401, {"error": "no valid session"})
        if path == "/v1/auth/renew":
            return self.renew(session)
        if path == "/v1/credentials":
            return self.issue(body)
        if path == "/v1/leases/revoke":
            return self.revoke(body)
        return Answer(404, {"error": "no such endpoint"})

    def login(self, body: object) -> Answer:
        if not isinstance(body, dict) or body.get("method") != "bootstrap_token":
            return Answer(400, {"error": "the dev proxy supports method bootstrap_token only"})
        if not secrets.compare_digest(str(body.get("token", "")), self.token):
            return Answer(401, {"error": "bootstrap token refused"})
        return self._new_session()

    def renew(self, session: str) -> Answer:
        with self.lock:
            self.sessions.pop(session, None)
        return self._new_session()

    def _new_session(self) -> Answer:
        session = "s." + secrets.token_urlsafe(24)
        with self.lock:
            self.sessions[session] = time.monotonic() + self.session_ttl
        return Answer(200, {"session_token": session, "ttl": self.session_ttl})

    def _session_valid(self, session: str) -> bool:
        with self.lock:
            expiry = self.sessions.get(session)
        return expiry is not None and expiry > time.monotonic()

    def issue(self, body: object) -> Answer:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return Answer(400, {"error": "requests must be a non-empty list"})
        credentials = []
        for item in requests:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                return Answer(400, {"error": "each request needs a name"})
            secret = item.get("secret")
            if secret not in self.secrets:
                return Answer(404, {"error": "unknown secret", "name": item["name"]})
            requested = item.get("ttl")
            ttl = min(requested, self.ttl) if isinstance(requested, int) and requested > 0 else self.ttl
            lease = "lease-" + secrets.token_hex(8)
            with self.lock:
                self.leases[lease] = time.monotonic() + ttl
            value = f"{self.secrets[secret]}.{secrets.token_hex(6)}"
            credentials.append({"name": item["name"], "value": value, "ttl": ttl, "lease_id": lease})
        return Answer(200, {"credentials": credentials})

    def revoke(self, body: object) -> Answer:
        lease_ids = body.get("lease_ids") if isinstance(body, dict) else None
        if not isinstance(lease_ids, list):
            return Answer(400, {"error": "lease_ids must be a list"})
        with self.lock:
            for lease in lease_ids:
                self.leases.pop(lease, None)
                self.revoked.append(lease)
        return Answer(204)


def _bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    return value[len("Bearer ") :] if value.startswith("Bearer ") else None


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Answers are small and written as headers then body: with Nagle's algorithm
    # on, the body waits for the client's delayed ACK (tens of ms per answer).
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST:
            self._send(Answer(413, {"error": "request too large"}))
            return
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(Answer(400, {"error": "body is not JSON"}))
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        self._send(self.server.proxy.answer(self.command, self.path, headers, body))

    def _send(self, answer: Answer) -> None:
        if isinstance(answer.body, bytes):
            payload = answer.body
        else:
            payload = b"" if answer.body is None else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: request lines carry nothing useful and tests read stderr


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: DevProxy


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {listen!r} is not HOST:PORT")
    if not is_loopback(host):
        raise ConfigError(f"--listen {host} is not a loopback address; the dev proxy serves this machine only")
    return host, int(port)


def make_server(proxy: DevProxy, listen: str = "127.0.0.1:0", handler: type[Handler] | None = None) -> _Server:
    host, port = parse_listen(listen)
    server_class = _Server
    if ":" in host:
        import socket

        class _Server6(_Server):
            address_family = socket.AF_INET6

        server_class = _Server6
    server = server_class((host, port), handler or Handler)
    server.proxy = proxy
    return server


def server_url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"


def load_secrets(path: str) -> dict[str, str]:
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path)
    except OSError as exc:
        raise ConfigError(f"--secrets {path}: cannot read it ({exc.strerror})") from None
    return {key: value for key, value in values.items() if value is not None}


def serve(secrets_file: str, *, listen: str, token: str | None, ttl: int) -> int:
    """`stronghold-init dev-proxy`: run until SIGTERM or SIGINT."""
    import os
    import signal
    import sys

    table = load_secrets(secrets_file) if os.path.isfile(secrets_file) else None
    if table is None:
        raise ConfigError(f"--secrets {secrets_file}: no such file")
    generated = token is None
    proxy = DevProxy(table, token=token or secrets.token_hex(16), ttl=ttl)  # hex: safe to paste after a flag
    server = make_server(proxy, listen)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
    thread.start()
    print(server_url(server), flush=True)
    if generated:
        print(f"bootstrap token: {proxy.token}", flush=True)
    print(f"dev-proxy: serving {len(table)} secrets, ttl {ttl}s; Ctrl-C stops", file=sys.stderr, flush=True)
    while not stop.wait(3600):
        pass
    server.shutdown()
    server.server_close()
    return 0
