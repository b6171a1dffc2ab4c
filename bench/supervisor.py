"""Supervisor figures: signal-forwarding latency vs tini, RSS, idle CPU, a rotation soak.

Each function returns plain numbers; bench/run.py prints and records them.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import DevProxyProcess, stronghold_binary

SIGNAL_CHILD = """
import os, signal, sys, time
def on_usr1(signum, frame):
    os.write(1, b"%r\\n" % time.monotonic())  # os.write: print in a handler is not reentrant
signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
os.write(1, b"ready\\n")
while True:
    signal.pause()
"""


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


class _Supervised:
    """A supervisor process (stronghold-init or tini) running SIGNAL_CHILD."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [*argv, sys.executable, "-c", SIGNAL_CHILD],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise RuntimeError(f"{argv[0]} did not start its child")

    def latency(self) -> float:
        sent = time.monotonic()
        os.kill(self.process.pid, signal.SIGUSR1)
        received = float(self.process.stdout.readline())  # type: ignore[union-attr]
        return received - sent

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def signal_latency_and_rss(rounds: int) -> dict[str, dict[str, float]]:
    """Alternate signals between stronghold-init and tini; p50/p99 in ms, RSS in MiB."""
    tini = shutil.which("tini")
    with DevProxyProcess() as proxy:
        env = {"PATH": os.environ["PATH"], "STRONGHOLD_PROXY_URL": proxy.url, "STRONGHOLD_BOOTSTRAP_TOKEN": proxy.token}
        env.update({"A": "stronghold://stripe/live", "B": "stronghold://postgres/app", "C": "stronghold://npm/publish"})
        runners = {"stronghold-init": _Supervised([stronghold_binary(), "--"], env)}
        if tini:
            runners["tini"] = _Supervised([tini, "-s", "--"], env)
        samples: dict[str, list[float]] = {name: [] for name in runners}
        try:
            for _ in range(rounds):
                for name, runner in runners.items():
                    samples[name].append(runner.latency())
            rss = {name: _rss_kib(runner.process.pid) for name, runner in runners.items()}
        finally:
            for runner in runners.values():
                runner.stop()
    return {
        name: {
            "p50_ms": statistics.median(values) * 1000,
            "p99_ms": _percentile(values, 0.99) * 1000,
            "max_ms": max(values) * 1000,
            "rss_mib": rss[name][0] / 1024,
            "peak_rss_mib": rss[name][1] / 1024,
        }
        for name, values in samples.items()
    }


def _cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid`, from schedstat (nanoseconds; /proc/<pid>/stat counts 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def idle_cpu(references: int, seconds: float) -> dict[str, float]:
    """CPU used by an idle supervisor with `references` tokens of ttl 300 s."""
    secrets_text = "".join(f"app/s{i}=v{i}\n" for i in range(references))
    with DevProxyProcess(secrets_text, ttl=300) as proxy:
        env = {"PATH": os.environ["PATH"], "STRONGHOLD_PROXY_URL": proxy.url, "STRONGHOLD_BOOTSTRAP_TOKEN": proxy.token}
        env.update({f"S{i}": f"stronghold://app/s{i}" for i in range(references)})
        process = subprocess.Popen(
            [
                stronghold_binary(),
                "--",
                sys.executable,
                "-c",
                "import sys; print('ready', flush=True); sys.stdin.read()",
            ],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            process.stdout.readline()  # type: ignore[union-attr]
            before = _cpu_seconds(process.pid)
            time.sleep(seconds)  # the measurement itself: the supervisor is left alone
            used = _cpu_seconds(process.pid) - before
        finally:
            process.terminate()
            process.wait(timeout=20)
    return {"seconds": seconds, "cpu_seconds": used, "percent_of_a_core": 100 * used / seconds}


def rotation_soak(rotations: int, references: int = 10) -> dict[str, float]:
    """Files rotating at ttl 1-2 s; a reader counts moments an expired token was in place."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from injector.devproxy import DevProxy, make_server, server_url

    class Recording(DevProxy):
        def __init__(self) -> None:
            super().__init__(
                {f"soak/s{i}": f"v{i}" for i in range(references)}, token="soak-token-123", ttl=2, rotate=True
            )
            self.expiry: dict[str, float] = {}

        def issue(self, body: object):
            answer = super().issue(body)
            if answer.status == 200:
                now = time.monotonic()
                for credential in answer.body["credentials"]:  # type: ignore[index]
                    self.expiry[credential["value"]] = now + credential["ttl"]
            return answer

    proxy = Recording()
    server = make_server(proxy, "127.0.0.1:0")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    directory = Path(tempfile.mkdtemp(dir="/dev/shm")) / "tokens"
    env = {
        "PATH": os.environ["PATH"],
        "STRONGHOLD_PROXY_URL": server_url(server),
        "STRONGHOLD_BOOTSTRAP_TOKEN": proxy.token,
    }
    env.update({f"S{i}_FILE": f"stronghold://soak/s{i}?ttl={1 + i % 2}" for i in range(references)})
    process = subprocess.Popen(
        [stronghold_binary(), "--dir", str(directory), "--", sys.executable, "-c", "import sys; sys.stdin.read()"],
        env=env,
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    expired_moments = reads = 0
    seen: set[str] = set()
    started = time.monotonic()
    try:
        while len(seen) < rotations + references and time.monotonic() - started < 3600:
            for i in range(references):
                try:
                    value = (directory / f"S{i}").read_text()
                except FileNotFoundError:
                    continue  # before the first write
                reads += 1
                seen.add(value)
                if time.monotonic() >= proxy.expiry.get(value, float("inf")):
                    expired_moments += 1
            time.sleep(0.005)  # the reader's own pace, not synchronisation
    finally:
        process.terminate()
        process.wait(timeout=20)
        server.shutdown()
        shutil.rmtree(directory.parent, ignore_errors=True)
    return {
        "rotations": len(seen) - references,
        "reads": reads,
        "expired_moments": expired_moments,
        "seconds": time.monotonic() - started,
    }
