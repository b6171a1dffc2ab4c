"""A credential proxy for local dev, demos and tests (docs/protocol.md; README: On a laptop).

Serves protocol v1 from a dotenv file of `secret/path=value` lines, with
`ttl = min(requested, --ttl)`.  Values are issued verbatim (a laptop's real
test keys must work against the real service); with `--rotate` every issue
mints a distinct `<value>.<random>` token, so rotations are visible in demos
and tests.  The file is read again whenever it changes, so editing a value is
a rotation at the next refresh.  Standard library apart from python-dotenv.

`DevProxy` holds the protocol logic apart from HTTP, so tests can run the
same code in a thread on port 0 and inject faults by overriding `answer`.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from injector.errors import ConfigError
from injector.settings.options import DEV_PROXY_LISTEN, DEV_PROXY_TTL

DEFAULT_LISTEN = DEV_PROXY_LISTEN
DEFAULT_TTL = DEV_PROXY_TTL
SESSION_TTL = 3600
MAX_REQUEST = 1024 * 1024


@dataclass
class Answer:
    status: int
    body: object | None = None
    headers: dict[str, str] = field(default_factory=dict)


class SecretsFile:
    """The --secrets file, read again when it changes (README: On a laptop).

    Its bytes are read at every issue and parsed again when they differ from
    last time: a dev proxy's file is small, and comparing content (not
    mtime, which is only as fine as the kernel's clock tick) sees every edit,
    in place or by rename.  A file that cannot be read or parsed just now
    (mid-save, removed) keeps the last good table: an edit never takes the
    proxy down.
    """

    MAX_SIZE = 1024 * 1024

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._raw: bytes | None = None
        self._table: dict[str, str] = {}
        self.reload_if_changed(first=True)

    def reload_if_changed(self, *, first: bool = False) -> dict[str, str]:
        with self._lock:
            try:
                with open(self.path, "rb") as handle:
                    raw = handle.read(self.MAX_SIZE + 1)
                if len(raw) > self.MAX_SIZE:
                    raise ConfigError(f"--secrets {self.path}: over 1 MiB")
                if raw == self._raw:
                    return self._table
                table = parse_secrets(raw, self.path, strict=not first)
            except (OSError, ConfigError) as exc:
                if first:
                    if isinstance(exc, ConfigError):
                        raise
                    raise ConfigError(f"--secrets {self.path}: cannot read it ({exc.strerror})") from None
                return self._table
            if not first:
                print(f"dev-proxy: {self.path} changed; serving {len(table)} secrets", file=sys.stderr, flush=True)
            self._raw, self._table = raw, table
            return table


class DevProxy:
    """Protocol v1 state: sessions, leases, secrets.  Thread-safe.

    `secrets_map` is a fixed table (tests edit it through `.secrets`);
    `secrets_file`, when given, is read again on every issue if it changed.
    `rotate`: mint `<value>.<random>` on every issue instead of the value itself.
    """

    def __init__(
        self,
        secrets_map: Mapping[str, str] | None = None,
        *,
        token: str,
        ttl: int = DEFAULT_TTL,
        session_ttl: int = SESSION_TTL,
        rotate: bool = False,
        secrets_file: SecretsFile | None = None,
    ) -> None:
        self.secrets = dict(secrets_map or {})
        self.secrets_file = secrets_file
        self.rotate = rotate
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
        # As bytes: compare_digest refuses a str that is not ASCII (a traceback, once).
        offered = str(body.get("token", "")).encode("utf-8", "surrogatepass")
        if not secrets.compare_digest(offered, self.token.encode("utf-8", "surrogatepass")):
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
        table = self.secrets_file.reload_if_changed() if self.secrets_file is not None else self.secrets
        credentials = []
        for item in requests:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                return Answer(400, {"error": "each request needs a name"})
            secret = item.get("secret")
            if secret not in table:
                return Answer(404, {"error": "unknown secret", "name": item["name"]})
            requested = item.get("ttl")
            ttl = min(requested, self.ttl) if isinstance(requested, int) and requested > 0 else self.ttl
            lease = "lease-" + secrets.token_hex(8)
            with self.lock:
                self.leases[lease] = time.monotonic() + ttl
            value = f"{table[secret]}.{secrets.token_hex(6)}" if self.rotate else table[secret]
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
        declared = (self.headers.get("Content-Length") or "0").strip()
        if not declared.isdigit() or not declared.isascii():  # "-1" read to end of stream: memory without bound
            self.close_connection = True
            self._send(Answer(400, {"error": "Content-Length must be a number of bytes"}))
            return
        length = int(declared)
        if length > MAX_REQUEST:
            self.close_connection = True
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


def make_server(proxy: DevProxy, listen: str = "127.0.0.1:0", handler: type[Handler] | None = None) -> _Server:
    """Bind `listen` (loopback only, serving.py's one HOST:PORT parser) with the proxy behind it."""
    from injector.serving import bind

    def make(address: tuple[str, int], family: int) -> _Server:
        server_class = _Server
        if family != _Server.address_family:

            class _Server6(_Server):
                address_family = family

            server_class = _Server6
        return server_class(address, handler or Handler)

    server = bind(listen, "--listen", make, loopback_only=True)
    server.proxy = proxy
    return server


def server_url(server: _Server) -> str:
    from injector.serving import listen_url

    return listen_url(server.server_address)


def parse_secrets(raw: bytes, path: str, *, strict: bool = False) -> dict[str, str]:
    """A secrets file's content -> {secret path: value}.

    `strict` (a reload): a file with nothing in it, or a line that is not
    `path=value` (a save caught half-way), is a ConfigError, so the caller
    keeps the last good table instead of serving a half-written one.
    """
    import io

    from dotenv import dotenv_values

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--secrets {path}: not UTF-8 text") from None
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)  # a secret's `$` is a character
    table = {key: value for key, value in values.items() if value is not None}
    if strict and (not table or len(table) != len(values)):
        raise ConfigError(f"--secrets {path}: empty or half-written")
    return table


TOKEN_VARIABLE = "STRONGHOLD_DEV_TOKEN"


def bootstrap_token(token: str | None, token_file: str | None, environ: Mapping[str, str]) -> tuple[str, bool]:
    """The token to accept -> (token, generated).

    --token, else --token-file, else $STRONGHOLD_DEV_TOKEN, else a fresh one.
    --token is readable by every local user in /proc/<pid>/cmdline; the
    other two are not.
    """
    if token is not None and token_file is not None:
        raise ConfigError("give --token or --token-file, not both")
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(f"--token-file {token_file}: cannot read it ({reason})") from None
        if not token:
            raise ConfigError(f"--token-file {token_file} is empty")
    elif token is None:
        token = environ.get(TOKEN_VARIABLE) or None
    if token is not None:
        if any(c in token for c in "\0\r\n"):
            raise ConfigError("the dev proxy's bootstrap token must be one line")
        return token, False
    return secrets.token_hex(16), True  # hex: safe to paste after a flag


def serve(
    secrets_file: str,
    *,
    listen: str,
    token: str | None,
    ttl: int,
    token_file: str | None = None,
    rotate: bool = False,
) -> int:
    """`stronghold-init dev-proxy`: run until SIGTERM or SIGINT."""
    import signal

    if not os.path.isfile(secrets_file):
        raise ConfigError(f"--secrets {secrets_file}: no such file")
    if ttl <= 0:
        raise ConfigError(f"--ttl {ttl}: must be a positive number of seconds")
    accepted, generated = bootstrap_token(token, token_file, os.environ)
    os.environ.pop(TOKEN_VARIABLE, None)
    table = SecretsFile(secrets_file)
    proxy = DevProxy(token=accepted, ttl=ttl, rotate=rotate, secrets_file=table)
    server = make_server(proxy, listen)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
    thread.start()
    print(server_url(server), flush=True)
    if generated:
        print(f"bootstrap token: {proxy.token}", flush=True)
    how = "each issue mints <value>.<random> (--rotate)" if rotate else "values verbatim"
    count = len(table.reload_if_changed())
    print(f"dev-proxy: serving {count} secrets, {how}, ttl {ttl}s; Ctrl-C stops", file=sys.stderr, flush=True)
    while not stop.wait(3600):
        pass
    server.shutdown()
    server.server_close()
    return 0
