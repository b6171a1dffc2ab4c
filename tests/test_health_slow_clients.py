"""`sidecar --health-listen` against slow clients (issue 19, found by attacking the binary).

16 clients that each send one byte every 1.5 s held every /healthz slot: the
2 s timeout was per read, not per request, and each slot was a thread.  Now a
request must arrive whole within its deadline or be dropped, and a probe gets
through while slow clients are connected.  150 idle connections under a low
file limit neither starve the refresher (EMFILE) nor hang /healthz.  Real
sidecar, real sockets.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from test_sidecar import get_health, health_url

from conftest import TestProxy, base_env, issues, start, wait_for

REFS = {"A_FILE": "stronghold://stripe/live"}


def sidecar(proxy: TestProxy, shm_dir, processes) -> tuple[object, str]:
    process = start(["sidecar", "--dir", str(shm_dir), "--health-listen", "127.0.0.1:0"], base_env(proxy, **REFS))
    processes.append(process)
    return process, health_url(process, [])


def address(url: str) -> tuple[str, int]:
    host, port = urllib.request.urlparse(url).netloc.split(":")
    return host, int(port)


class Drippers:
    """`count` clients sending a request one byte every `every` seconds (the attack, not a wait)."""

    def __init__(
        self, where: tuple[str, int], count: int, every: float, accepted: Callable[[int], object] | None = None
    ) -> None:
        self.sockets = []
        for index in range(count):
            self.sockets.append(socket.create_connection(where, timeout=10))
            self.sockets[-1].send(b"G")
            if accepted is not None:
                accepted(index + 1)  # one at a time: the listen backlog never overflows
        self.closed_by_server: set[int] = set()
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        request = b"ET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100000
        for byte in request:
            for index, sock in enumerate(self.sockets):
                if index in self.closed_by_server:
                    continue
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    self.closed_by_server.add(index)
            if self._stop.wait(self._every):
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            sock.close()


def sockets_of(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def test_a_probe_gets_through_while_16_slow_clients_drip(proxy: TestProxy, shm_dir, processes) -> None:
    process, url = sidecar(proxy, shm_dir, processes)
    before = sockets_of(process.pid)

    def accepted(count: int) -> None:  # a connection still in the listen backlog holds nothing yet
        wait_for(lambda: sockets_of(process.pid) >= before + count, timeout=30, what=f"slow client {count} accepted")

    drippers = Drippers(address(url), 16, every=1.0, accepted=accepted)
    try:
        assert get_health(url) == (200, {"status": "ok"}), "the probe was refused while slow clients dripped"
    finally:
        drippers.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_a_request_must_arrive_whole_within_its_deadline(proxy: TestProxy, shm_dir, processes) -> None:
    """A client that drips faster than any per-read timeout is still dropped once the request's time is up."""
    process, url = sidecar(proxy, shm_dir, processes)
    where = address(url)
    drippers = Drippers(where, 1, every=0.3)
    started = time.monotonic()
    try:
        sock = drippers.sockets[0]

        def dropped() -> bool:
            if 0 in drippers.closed_by_server:
                return True
            try:
                sock.setblocking(False)
                return sock.recv(4096) == b""  # the server closed its side
            except BlockingIOError:
                return False
            except OSError:
                return True

        wait_for(dropped, timeout=30, interval=0.1, what="the slow request to be dropped")
        assert time.monotonic() - started < 15, "dropped at its deadline (2 s), not when it gave up"
    finally:
        drippers.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_an_idle_connection_flood_neither_starves_refresh_nor_hangs_healthz(
    make_proxy, shm_dir: Path, processes
) -> None:
    """150 idle connections under `ulimit -n 100`: refreshes went EMFILE and /healthz hung."""
    import resource
    import socket
    import urllib.request

    from test_sidecar import get_health, health_url

    proxy = make_proxy(ttl=2)
    env = base_env(proxy, A_FILE="stronghold://stripe/live?ttl=2")
    process = start(
        ["sidecar", "--dir", str(shm_dir), "--health-listen", "127.0.0.1:0"],
        env,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100)),
    )
    processes.append(process)
    url = health_url(process, [])
    host, port = urllib.request.urlparse(url).netloc.split(":")
    flood = []
    try:
        for _ in range(150):
            flood.append(socket.create_connection((host, int(port)), timeout=10))
        issued = issues(proxy)
        wait_for(lambda: issues(proxy) >= issued + 3, timeout=60, what="refreshes during the flood")

        def healthy() -> bool:
            try:
                return get_health(url)[0] == 200
            except OSError:
                return False  # refused while the cap is full: the probe tries again, as a kubelet does

        wait_for(healthy, timeout=30, interval=0.2, what="/healthz to answer during the flood")
    finally:
        for sock in flood:
            sock.close()
    process.send_signal(__import__("signal").SIGTERM)
    assert process.wait(timeout=30) == 0
