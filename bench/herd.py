"""A herd: many stronghold-init processes start at once against one dev proxy.

Do they all start, and do their refreshes spread out (jittered 60-75% of the
ttl) rather than arriving as one burst?  The proxy runs in this process (the
dev proxy's own code) and records when each refresh arrives.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness import stronghold_binary

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from injector.devproxy import DevProxy, make_server, server_url


class _Recording(DevProxy):
    def __init__(self, ttl: int) -> None:
        super().__init__({"herd/secret": "value"}, token="herd-bootstrap-token", ttl=ttl)
        self.issues: list[tuple[float, str]] = []  # (time, session) per credentials request

    def answer(self, method, path, headers, body):
        if path == "/v1/credentials":
            with self.lock:
                self.issues.append((time.monotonic(), headers.get("authorization", "")))
        return super().answer(method, path, headers, body)


def herd(processes: int, ttl: int) -> dict[str, float]:
    proxy = _Recording(ttl)
    server = make_server(proxy, "127.0.0.1:0")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "PATH": os.environ["PATH"],
        "STRONGHOLD_PROXY_URL": server_url(server),
        "STRONGHOLD_BOOTSTRAP_TOKEN": proxy.token,
        "K_FILE": "stronghold://herd/secret",
    }
    started = time.monotonic()
    children = []
    try:
        for i in range(processes):
            directory = f"/dev/shm/herd-{os.getpid()}-{i}"
            children.append(
                subprocess.Popen(
                    [stronghold_binary(), "--dir", directory, "--", "sh", "-c", "read line"],
                    env=env,
                    stdin=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            )
        # Wait until every process has made its first request and its first refresh.
        deadline = started + 30 + 2 * ttl
        while time.monotonic() < deadline:
            with proxy.lock:
                sessions = {}
                for at, session in proxy.issues:
                    sessions.setdefault(session, []).append(at)
            if len(sessions) >= processes and all(len(v) >= 2 for v in sessions.values()):
                break
            time.sleep(0.2)  # polling the proxy's record, not synchronising the processes
        alive = sum(1 for child in children if child.poll() is None)
    finally:
        for child in children:
            if child.poll() is None:
                child.stdin.close()  # type: ignore[union-attr]
        for child in children:
            child.wait(timeout=30)
        server.shutdown()
    starts = sorted(times[0] for times in sessions.values())
    refreshes = sorted(times[1] for times in sessions.values() if len(times) > 1)
    burst = max((sum(1 for t in refreshes if s <= t < s + 0.1) for s in refreshes), default=0)
    # When in its ttl each process refreshed: the jitter alone, start times taken out.
    offsets = [(times[1] - times[0]) / ttl for times in sessions.values() if len(times) > 1]
    return {
        "processes": processes,
        "started": len(sessions),
        "alive_at_first_refresh": alive,
        "start_spread_s": starts[-1] - starts[0] if starts else 0.0,
        "refreshed": len(refreshes),
        "refresh_spread_s": refreshes[-1] - refreshes[0] if refreshes else 0.0,
        "refresh_spread_pct_of_ttl": 100 * (refreshes[-1] - refreshes[0]) / ttl if refreshes else 0.0,
        "max_refreshes_in_100ms": burst,
        "refresh_at_min_pct": 100 * min(offsets) if offsets else 0.0,
        "refresh_at_max_pct": 100 * max(offsets) if offsets else 0.0,
        "ttl": ttl,
    }
