"""The sidecar's `/healthz`: 200 while every token is unexpired, 503 naming the expired ones.

Imported only with --health-listen.  The address is bound before any
credential is issued (a bad or busy address fails first) and served once
the files are in place.

One thread and a selector, not a thread per connection: a client holds
nothing but a buffer while its request arrives, so clients that drip one
byte at a time cannot occupy the slots a probe needs (16 of them did, with
a thread each and a per-read timeout).  Every request must arrive whole
within HEALTH_REQUEST_DEADLINE of its connection, however it is dripped, or
the connection is dropped; at most HEALTH_MAX_CONNECTIONS are open at once
(more are closed at once), so a flood cannot use up the descriptors the
refresher needs.  Answering is a lookup in the ledger: it never blocks.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time

from injector.log import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.refresh.ledger import Ledger

HEALTH_REQUEST_DEADLINE = 2.0  # seconds from connect to a whole request; a slower client is dropped
HEALTH_MAX_CONNECTIONS = 64  # open at once; a probe is one short request, more at once is a flood
MAX_REQUEST_HEAD = 8192  # bytes of request line and headers; a probe sends a few hundred
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class _Pending:
    """A connection whose request has not arrived whole yet."""

    __slots__ = ("data", "deadline")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.data = bytearray()


class HealthServer:
    """A bound listening socket; `serve()` answers /healthz in a daemon thread until `close()`."""

    def __init__(self, listener: socket.socket) -> None:
        self.socket = listener
        self.server_address = listener.getsockname()
        self.ledger: Ledger | None = None  # set by serve() once the files are in place
        self._wake_r, self._wake_w = socket.socketpair()  # close() wakes the loop through this
        self._thread: threading.Thread | None = None
        self._stopping = False

    def serve(self, ledger: Ledger) -> None:
        """Answer /healthz from now on, in a daemon thread."""
        from injector.serving import listen_url

        self.ledger = ledger
        self._thread = threading.Thread(target=self._loop, name="stronghold-health", daemon=True)
        self._thread.start()
        log.info("health endpoint listening", url=listen_url(self.server_address) + "/healthz")

    def close(self) -> None:
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5.0)
        for sock in (self.socket, self._wake_r, self._wake_w):
            sock.close()

    # -- the loop ------------------------------------------------------------

    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        self.socket.setblocking(False)
        selector.register(self.socket, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        pending: dict[socket.socket, _Pending] = {}
        try:
            while not self._stopping:
                now = time.monotonic()
                wait = min((p.deadline for p in pending.values()), default=now + 3600.0) - now
                for key, _ in selector.select(max(0.0, wait)):
                    sock = key.fileobj
                    if sock is self._wake_r:
                        return
                    if sock is self.socket:
                        self._accept(selector, pending)
                    else:
                        self._read(selector, pending, sock)  # type: ignore[arg-type]
                now = time.monotonic()
                for sock in [s for s, p in pending.items() if p.deadline <= now]:
                    self._drop(selector, pending, sock)  # the whole request did not arrive in time
        except Exception as exc:  # a bug must not take the sidecar down; the probe then fails, which is seen
            log.error(f"internal error in the health endpoint: {type(exc).__name__}; it stops answering")
        finally:
            for sock in list(pending):
                self._drop(selector, pending, sock)
            selector.close()

    def _accept(self, selector: selectors.BaseSelector, pending: dict[socket.socket, _Pending]) -> None:
        while True:
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and the like: leave it in the backlog, try at the next event
                return
            if len(pending) >= HEALTH_MAX_CONNECTIONS:
                sock.close()
                continue
            sock.setblocking(False)
            pending[sock] = _Pending(time.monotonic() + HEALTH_REQUEST_DEADLINE)
            selector.register(sock, selectors.EVENT_READ)

    def _read(
        self, selector: selectors.BaseSelector, pending: dict[socket.socket, _Pending], sock: socket.socket
    ) -> None:
        state = pending[sock]
        try:
            chunk = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(selector, pending, sock)
            return
        state.data += chunk
        end = _head_end(state.data)
        if end < 0:
            if len(state.data) > MAX_REQUEST_HEAD:
                self._answer(sock, 400, {"error": "request too large"})
                self._drop(selector, pending, sock)
            return
        status, body = self._respond(bytes(state.data[:end]))
        self._answer(sock, status, body)
        self._drop(selector, pending, sock)

    def _respond(self, head: bytes) -> tuple[int, dict[str, object]]:
        parts = head.split(b"\r\n" if b"\r\n" in head else b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return 400, {"error": "bad request line"}
        method, path = parts[0], parts[1]
        if method != b"GET":
            return 405, {"error": "use GET"}
        if path != b"/healthz":
            return 404, {"error": "not found"}
        ledger = self.ledger
        expired = ledger.expired(time.monotonic()) if ledger is not None else []
        if expired:
            return 503, {"status": "expired", "expired": expired}
        return 200, {"status": "ok"}

    @staticmethod
    def _answer(sock: socket.socket, status: int, body: dict[str, object]) -> None:
        payload = json.dumps(body).encode()
        head = (
            f"HTTP/1.0 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            sock.send(head + payload)  # a few hundred bytes: the socket buffer takes them whole
        except OSError:
            pass

    @staticmethod
    def _drop(selector: selectors.BaseSelector, pending: dict[socket.socket, _Pending], sock: socket.socket) -> None:
        pending.pop(sock, None)
        try:
            selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()


def _head_end(data: bytearray) -> int:
    """Where the request head ends (its blank line), or -1 while it is incomplete."""
    for mark in (b"\r\n\r\n", b"\n\n"):
        index = data.find(mark)
        if index >= 0:
            return index
    return -1


def bind_health(listen: str) -> HealthServer:
    """Bind --health-listen (HOST:PORT, [IPv6]:PORT; port 0 picks one), not serving yet; 78 if it cannot."""
    from injector.serving import bind

    def make(address: tuple[str, int], family: socket.AddressFamily) -> HealthServer:
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(128)
        except BaseException:
            listener.close()
            raise
        return HealthServer(listener)

    return bind(listen, "--health-listen", make)
