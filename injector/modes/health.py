"""The sidecar's `/healthz`: 200 while every token is unexpired, 503 naming the expired ones.

Imported only with --health-listen.  The address is bound before any
credential is issued (a bad or busy address fails first) and served once
the files are in place.  Each connection gets a read timeout and at most
HEALTH_MAX_CONNECTIONS are served at once: a flood of idle connections must
not use up the descriptors the refresher needs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from injector.errors import ConfigError
from injector.log import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.refresh.ledger import Ledger

HEALTH_CONNECTION_TIMEOUT = 2.0  # seconds a /healthz client may take per read
HEALTH_MAX_CONNECTIONS = 16  # probes are one short request each; more at once is a flood


class HealthHandler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # headers and body go out as two writes: do not stall the body
    timeout = HEALTH_CONNECTION_TIMEOUT  # an idle or slow client is dropped, not waited on for ever
    server: HealthServer

    def do_GET(self) -> None:
        if self.path != "/healthz":
            self._answer(404, {"error": "not found"})
            return
        ledger = self.server.ledger
        expired = ledger.expired(time.monotonic()) if ledger is not None else []
        if expired:
            self._answer(503, {"status": "expired", "expired": expired})
        else:
            self._answer(200, {"status": "ok"})

    def _answer(self, status: int, body: dict[str, object]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds would flood the log


class HealthServer(ThreadingHTTPServer):
    """At most HEALTH_MAX_CONNECTIONS at once; more are closed at once."""

    daemon_threads = True
    ledger: Ledger | None = None  # set by serve() once the files are in place

    def __init__(self, address: tuple[str, int]) -> None:
        self.slots = threading.BoundedSemaphore(HEALTH_MAX_CONNECTIONS)
        super().__init__(address, HealthHandler)

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def serve(self, ledger: Ledger) -> None:
        """Answer /healthz from now on, in a daemon thread."""
        self.ledger = ledger
        threading.Thread(target=self.serve_forever, name="stronghold-health", daemon=True).start()
        bound_host, bound_port = self.server_address[:2]
        host = bound_host.decode() if isinstance(bound_host, bytes) else bound_host  # (a str for IP sockets)
        shown = f"[{host}]" if ":" in host else host
        log.info("health endpoint listening", url=f"http://{shown}:{bound_port}/healthz")

    def close(self) -> None:
        if self.ledger is not None:
            self.shutdown()  # only once serving: shutdown() waits for serve_forever to return
        self.server_close()


class HealthServerV6(HealthServer):
    address_family = socket.AF_INET6


def bind_health(listen: str) -> HealthServer:
    """Bind --health-listen (HOST:PORT, [IPv6]:PORT; port 0 picks one), not serving yet; 78 if it cannot."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ConfigError(f"--health-listen {listen!r} is not HOST:PORT")
    server_class = HealthServerV6 if ":" in host else HealthServer  # an IPv6 address, e.g. [::] or [::1]
    try:
        return server_class((host, int(port)))
    except (OSError, OverflowError) as exc:
        raise ConfigError(
            f"--health-listen {listen}: cannot listen ({getattr(exc, 'strerror', None) or exc})"
        ) from None
