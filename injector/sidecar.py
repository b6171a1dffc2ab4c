"""`fetch` (one-shot, for init containers) and `sidecar` (keep files fresh).

Both take `_FILE` references only: there is no child whose environment
could receive a token.  `<dir>/.ready` is created only once every file is
in place.
"""

from __future__ import annotations

import json
import signal
import threading
import time

from injector.errors import ConfigError, ExitCode
from injector.log import log
from injector.refresh import Ledger, Refresher
from injector.run import child_identity, prepare_directory, write_files
from injector.startup import Plan, issue_all, open_source

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HEALTH_CONNECTION_TIMEOUT = 2.0  # seconds a /healthz client may take per read
HEALTH_MAX_CONNECTIONS = 16  # probes are one short request each; more at once is a flood
WAKE = signal.SIGRTMIN  # the refresher asks the main thread to exit (--on-expiry exit)


def _file_references_only(plan: Plan, mode: str) -> None:
    if plan.env_references:
        names = ", ".join(r.name for r in plan.env_references)
        raise ConfigError(f"{names}: {mode} delivers files only; name the variable NAME_FILE")
    if not plan.references:
        raise ConfigError(f"{mode}: no NAME_FILE=stronghold://... reference found in the environment")


def fetch(plan: Plan) -> int:
    """Write every file and <dir>/.ready, leave them in place, exit 0."""
    _file_references_only(plan, "fetch")
    source = open_source(plan.settings, plan.references)
    directory = prepare_directory(plan, child_identity(plan))
    assert directory is not None
    try:
        credentials = issue_all(source, plan.references, plan.settings)
        write_files(directory, plan.references, credentials)
        directory.mark_ready()
    except BaseException:
        directory.cleanup()
        raise
    log.info("files written", dir=directory.path, count=len(credentials))
    return 0


def sidecar(plan: Plan) -> int:
    """Keep the files fresh until SIGTERM or SIGINT; then revoke, remove them, exit 0."""
    _file_references_only(plan, "sidecar")
    settings = plan.settings
    source = open_source(settings, plan.references)
    # Bound now, so a bad or busy address fails before any credential is issued;
    # served once the files are in place.
    health = bind_health(settings.health_listen) if settings.health_listen else None
    directory = prepare_directory(plan, child_identity(plan))
    assert directory is not None
    try:
        credentials = issue_all(source, plan.references, settings)
        ledger = Ledger(credentials)
        expired_exit = threading.Event()
        main_thread = threading.get_ident()

        def on_expired(names: list[str]) -> None:
            if settings.on_expiry == "exit":
                log.error("token expired; stopping (--on-expiry exit)", names=",".join(names))
                expired_exit.set()
                signal.pthread_kill(main_thread, WAKE)

        refresher = Refresher(
            plan.references,
            source,
            ledger,
            deliver=directory.deliver,
            on_rotated=lambda names: log.info("files rotated", names=",".join(names)),
            on_expired=on_expired,
            poll_interval=settings.vault_poll,
        )
        try:
            write_files(directory, plan.references, credentials)
            directory.mark_ready()
            # Blocked before any thread starts, so only this thread takes them.
            signal.pthread_sigmask(signal.SIG_BLOCK, {*STOP_SIGNALS, WAKE})
            if health is not None:
                serve_health(health, ledger)
            refresher.start()
            log.info("sidecar ready", dir=directory.path, count=len(credentials))
            received = signal.sigwaitinfo({*STOP_SIGNALS, WAKE})
            log.info("stopping", signal=signal.Signals(received.si_signo).name)
        finally:
            refresher.stop_and_revoke()
    finally:
        if health is not None:
            if getattr(health, "ledger", None) is not None:
                health.shutdown()  # only once serving: shutdown() waits for serve_forever to return
            health.server_close()
        directory.cleanup()
    return ExitCode.UNAVAILABLE if expired_exit.is_set() else 0


def bind_health(listen: str):  # -> http.server.ThreadingHTTPServer, listening but not serving yet
    """Bind --health-listen (HOST:PORT, [IPv6]:PORT; port 0 picks one); 78 if it cannot."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ConfigError(f"--health-listen {listen!r} is not HOST:PORT")

    class HealthHandler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body go out as two writes: do not stall the body
        timeout = HEALTH_CONNECTION_TIMEOUT  # an idle or slow client is dropped, not waited on for ever

        def do_GET(self) -> None:
            if self.path != "/healthz":
                self._answer(404, {"error": "not found"})
                return
            expired = self.server.ledger.expired(time.monotonic())  # type: ignore[attr-defined]
            if expired:
                self._answer(503, {"status": "expired", "expired": expired})
            else:
                self._answer(200, {"status": "ok"})

        def _answer(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would flood the log

    class CappedServer(ThreadingHTTPServer):
        """At most HEALTH_MAX_CONNECTIONS at once; more are closed at once.

        A thread and a descriptor per connection, unbounded, let a flood of idle
        connections use up the descriptors the refresher needs (EMFILE).
        """

        slots = threading.BoundedSemaphore(HEALTH_MAX_CONNECTIONS)

        def process_request(self, request, client_address) -> None:
            if not self.slots.acquire(blocking=False):
                self.shutdown_request(request)
                return
            try:
                super().process_request(request, client_address)
            except BaseException:
                self.slots.release()
                raise

        def process_request_thread(self, request, client_address) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                self.slots.release()

    server_class = CappedServer
    if ":" in host:  # an IPv6 address, e.g. [::] or [::1]
        import socket

        class ServerV6(CappedServer):
            address_family = socket.AF_INET6

        server_class = ServerV6
    try:
        server = server_class((host, int(port)), HealthHandler)
    except (OSError, OverflowError) as exc:
        raise ConfigError(
            f"--health-listen {listen}: cannot listen ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    server.daemon_threads = True
    return server


def serve_health(server, ledger: Ledger) -> None:
    """GET /healthz from now on: 200 while every token is unexpired, else 503 naming the expired ones."""
    server.ledger = ledger
    threading.Thread(target=server.serve_forever, name="stronghold-health", daemon=True).start()
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    log.info("health endpoint listening", url=f"http://{shown}:{bound_port}/healthz")
