"""A small JSON-over-HTTP(S) client on the standard library's http.client.

Why not requests: importing it costs ~140 ms here, more than the whole
start-up budget (every container start pays it: README, Dependencies).  What the protocol
needs is small: POST/GET JSON, a bearer header, TLS with a CA bundle and an
optional client certificate, timeouts, a size limit, and *no* redirects
(http.client never follows them, which is what docs/protocol.md asks for).

One keep-alive connection per thread, so the refresher thread and the main
thread never share a socket.

Timeouts bound the whole request, not each socket read: a server that drips
one byte at a time would otherwise keep a request alive for ever.  A timer
shuts the socket down at the deadline, and `deadline_scope()` lets a caller
(start-up, bounded by --startup-timeout) cap every request made inside it.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl  # (free: http.client has loaded it; the context itself is built only for https)
import threading
import time
from collections import namedtuple
from contextlib import contextmanager
from urllib.parse import urlsplit

from injector import __version__
from injector.errors import BrokenAnswerError, ConfigError, TransientError, UnavailableError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_BODY = 1024 * 1024  # docs/protocol.md: a body over 1 MiB is a broken answer
MAX_ERROR_TEXT = 200  # of a server's error message, shown in ours
USER_AGENT = f"stronghold-init/{__version__}"
_scope = threading.local()  # .deadline: a monotonic time no request in this thread may outlive


@contextmanager
def deadline_scope(deadline: float) -> Iterator[None]:
    """Every request made by this thread inside the block ends by `deadline` (time.monotonic())."""
    previous = getattr(_scope, "deadline", None)
    _scope.deadline = deadline if previous is None else min(previous, deadline)
    try:
        yield
    finally:
        _scope.deadline = previous


class _Watchdog:
    """Cuts a connection's socket at a deadline, so no read can outlive the request."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.fired = False
        self._connection = connection
        self._timer = threading.Timer(max(seconds, 0.0), self._cut)
        self._timer.daemon = True
        # Started with every signal blocked (threads inherit the mask): a signal
        # such as SIGCHLD must reach the thread that waits for it, never this one.
        import signal

        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._timer.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def _cut(self) -> None:
        self.fired = True
        sock = self._connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


class Response(namedtuple("Response", "status body retry_after")):
    """status: HTTP status; body: bytes (at most 1 MiB); retry_after: seconds or None."""

    __slots__ = ()

    def json(self) -> object:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise BrokenAnswerError(f"answer with status {self.status} is not JSON") from None

    def error_detail(self) -> str:
        """`: <the server's message>` for an error answer, or "".

        Protocol v1 says `{"error": "..."}`, OpenBao `{"errors": ["...", ...]}`.
        Cut short and stripped of control characters: it goes into one log line
        (and through the redactor, in case a server echoes a token).
        """
        try:
            data = self.json()
        except BrokenAnswerError:
            return ""
        if not isinstance(data, dict):
            return ""
        text = data.get("error")
        errors = data.get("errors")
        if not isinstance(text, str) and isinstance(errors, list) and errors:
            text = errors[0]
        if not isinstance(text, str):
            return ""
        from injector.log import log

        # Redacted before it is cut: a cut could split an echoed token so that the redactor misses the rest.
        clean = "".join(c if c.isprintable() else " " for c in log.redact(text))[:MAX_ERROR_TEXT].strip()
        return f": {clean}" if clean else ""


class TLSOptions(namedtuple("TLSOptions", "ca_bundle client_cert client_key", defaults=(None, None, None))):
    """Paths: CA bundle (None: the system store), client certificate and key for mTLS."""

    __slots__ = ()


class Transport:
    """Talks to one base URL.  Raises TransientError for connection trouble."""

    def __init__(
        self, base_url: str, *, tls: TLSOptions | None = None, timeout: float = 10.0, label: str | None = None
    ) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url
        # How errors name this server: the URL without credentials, and the
        # setting it came from when the caller says (`http://h:1 (from --proxy)`).
        self.label = label or display_url(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.path_prefix = self._prefix  # (a signed request signs the path it is sent to)
        self.host_header = parts.netloc.rpartition("@")[2]  # what http.client would send as Host
        self._tls = tls or TLSOptions()
        self._timeout = timeout
        self._local = threading.local()
        self._ssl_context: ssl.SSLContext | None = None

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        # bytes go as they are (AWS signs the exact body it is sent); anything else as JSON.
        payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        url_path = self._prefix + path
        # A kept-alive connection may have been closed by the server since the
        # last call; that shows as a failure on the first use, so try a fresh
        # connection once before calling it transient.
        started = time.monotonic()
        deadline = started + (timeout or self._timeout)
        scope = getattr(_scope, "deadline", None)
        if scope is not None and scope < deadline:
            deadline = scope
        for fresh in (False, True):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransientError(f"{self.label} timed out after {deadline - started:.1f} s without an answer")
            connection, reused = self._connection(fresh, left)
            watchdog = _Watchdog(connection, left)
            try:
                connection.request(method, url_path, body=payload, headers=all_headers)
                answer = connection.getresponse()
                data = answer.read(MAX_BODY + 1)
                retry_after = _parse_retry_after(answer.getheader("Retry-After"))
                status = answer.status
                if answer.will_close or len(data) > MAX_BODY:
                    self._drop()
                if watchdog.fired:  # the cut may have ended the body early: never trust a short read
                    raise TimeoutError("timed out")
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if watchdog.fired:  # the whole request ran out of time, however the server dripped
                    waited = round(deadline - started, 1)
                    raise TransientError(f"{self.label} timed out after {waited:g} s without an answer") from None
                if _fatal_tls(exc):
                    raise UnavailableError(
                        f"TLS with {self._host} failed: {_describe_tls(exc)} (at {self.label})"
                    ) from None
                if reused and not fresh:
                    continue
                if isinstance(exc, socket.timeout):
                    waited = timeout or self._timeout
                    raise TransientError(f"{self.label} timed out after {waited:g} s without an answer") from None
                raise TransientError(f"cannot reach {self.label}: {_describe(exc)}{self._container_hint()}") from None
            finally:
                watchdog.cancel()
            if len(data) > MAX_BODY:
                raise BrokenAnswerError("answer body is over 1 MiB")
            return Response(status, data, retry_after)
        raise AssertionError("unreachable")

    def _container_hint(self) -> str:
        """As PID 1 we are most likely a container's entrypoint, where loopback is the container itself."""
        import os

        from injector.netaddr import is_loopback

        if os.getpid() != 1 or not is_loopback(self._host):
            return ""
        return (
            f"; {self._host} inside a container is the container itself, not the host: give the address "
            "the host has from the container (e.g. http://host.containers.internal:PORT, or run with --network host)"
        )

    def close(self) -> None:
        self._drop()

    def _connection(self, fresh: bool, timeout: float | None) -> tuple[http.client.HTTPConnection, bool]:
        connection = getattr(self._local, "connection", None)
        if connection is not None and not fresh:
            connection.timeout = timeout or self._timeout
            if connection.sock is not None:
                connection.sock.settimeout(connection.timeout)
            return connection, True
        self._drop()
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout or self._timeout, context=self._context()
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout or self._timeout)
        self._local.connection = connection
        return connection, False

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def _context(self) -> ssl.SSLContext:  # built on first use: only https needs one
        if self._ssl_context is None:
            try:
                context = ssl.create_default_context(cafile=self._tls.ca_bundle)
                if self._tls.client_cert:
                    context.load_cert_chain(self._tls.client_cert, self._tls.client_key)
            except (OSError, ssl.SSLError) as exc:  # unreadable or not PEM: a configuration error
                raise ConfigError(f"cannot load the TLS files (CA bundle or client certificate): {exc}") from None
            self._ssl_context = context
        return self._ssl_context


def _fatal_tls(exc: BaseException) -> bool:
    """A TLS failure that retrying cannot fix: a certificate not trusted, a
    handshake refused (e.g. the server requires a client certificate).  An
    abrupt EOF stays a connection problem (transient)."""
    if not isinstance(exc, ssl.SSLError):
        return False
    return not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError))


def display_url(url: str) -> str:
    """`scheme://host[:port][/path]`: never a user name, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


def _describe_tls(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"):
        return "the server does not speak TLS on that port (is it plain http://? then use http:// for a loopback host)"
    return _describe(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    return f"{type(exc).__name__}" + (f" ({reason})" if reason else "")


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is read as 'soon' (None)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None
