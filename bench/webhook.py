"""`stronghold-init webhook`: admission latency and memory (docs/benchmarks.md, "Admission webhook").

The real binary serves on loopback with a trustme certificate; clients are
threads in up to 4 processes, each on its own kept-alive TLS connection (as the API
server keeps its connections), sending an AdmissionReview of a pod whose
container has `command` set (no registry involved).  Latency is per review,
p50 and p99, at 1 and at 32 concurrent clients; the baseline in the same run
is `GET /healthz` on the same connections (TLS, HTTP parsing and the thread
hop, without the review), so the ratio is what a review adds.  Goal: p99 under
20 ms at 32 clients.  The clients share the machine's cores with the server,
so at 32 clients part of each figure is the clients' own Python (and, on a
shared machine, everyone else's load: compare with the healthz column).

Memory: the server's VmRSS after 1,000 reviews and after 100,000 (goal:
within 10%), each review with a fresh uid and pod name so nothing is reused.

    python bench/webhook.py [--reviews 100000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import stronghold_binary

from testkit.webhook import WebhookProcess, review, write_certificate

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "shop", "labels": {"stronghold.dev/inject": "true"},
                 "annotations": {"stronghold.dev/proxy-url": "https://stronghold.platform.svc:8443"}},
    "spec": {"containers": [
        {"name": "api", "image": "registry.example.com/shop-api:1.0.0", "command": ["node", "server.js"],
         "env": [{"name": "STRIPE_KEY", "value": "stronghold://stripe/live?ttl=15m"}]},
        {"name": "metrics", "image": "registry.example.com/exporter:2", "args": ["--port", "9100"]},
    ]},
}  # fmt: skip


def _body() -> bytes:
    pod = json.loads(json.dumps(POD))
    pod["metadata"]["name"] = "shop-" + uuid.uuid4().hex[:10]
    return json.dumps(review(pod)).encode()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _client_process(host: str, port: int, ca_pem: bytes, threads: int, per_client: int, path: str) -> list[float]:
    """One client process: `threads` kept-alive connections, `per_client` requests each; -> latencies."""
    import http.client
    import ssl

    context = ssl.create_default_context(cadata=ca_pem.decode())
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    ready = threading.Barrier(threads)

    def client(index: int) -> None:
        bodies = [_body() for _ in range(per_client)] if path == "/mutate" else []
        connection = http.client.HTTPSConnection(host, port, context=context, timeout=60)
        connection.connect()  # the handshake is not part of a review
        ready.wait()
        try:
            for n in range(per_client):
                began = time.perf_counter()
                if path == "/mutate":
                    connection.request("POST", path, body=bodies[n], headers={"Content-Type": "application/json"})
                else:
                    connection.request("GET", path)
                response = connection.getresponse()
                data = response.read()
                latencies[index].append(time.perf_counter() - began)
                if response.status != 200 or (path == "/mutate" and b'"patch"' not in data):
                    errors.append(f"status {response.status}")
        except Exception as exc:  # a dropped connection is a failed run, not a thread's traceback
            errors.append(type(exc).__name__)
        finally:
            connection.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    return [x for per in latencies for x in per]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (/proc/PID/stat, clock ticks)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(webhook: WebhookProcess, ca_pem: bytes, clients: int, per_client: int, path: str) -> list[float]:
    """Latencies (seconds) of `clients` concurrent kept-alive connections, `per_client` requests each.

    The clients run in up to 4 processes, so their own Python (the GIL) weighs less on the figures."""
    from concurrent.futures import ProcessPoolExecutor

    processes = min(clients, 4)
    with ProcessPoolExecutor(processes) as pool:
        futures = [
            pool.submit(_client_process, webhook.host, webhook.port, ca_pem, clients // processes, per_client, path)
            for _ in range(processes)
        ]
        return [x for future in futures for x in future.result()]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(reviews: int, latency_requests: int) -> list[str]:
    import trustme

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        ca = trustme.CA()
        cert, key = write_certificate(ca, Path(tmp))
        webhook = WebhookProcess(stronghold_binary(), cert, key, "--log-level", "warning")
        ca_pem = ca.cert_pem.bytes()
        try:
            # Memory first, on a fresh server: after 1,000 reviews, then after `reviews` in all.
            load(webhook, ca_pem, 8, 1000 // 8, "/mutate")
            after_1k = _rss_kib(webhook.process.pid)
            rest = (max(reviews - 1000, 0) // 8) * 8
            started, cpu = time.perf_counter(), _cpu_seconds(webhook.process.pid)
            load(webhook, ca_pem, 8, rest // 8, "/mutate")
            took, cpu = time.perf_counter() - started, _cpu_seconds(webhook.process.pid) - cpu
            after = _rss_kib(webhook.process.pid)
            memory = (
                f"Memory (VmRSS): {after_1k / 1024:.1f} MiB after 1,000 reviews, {after / 1024:.1f} MiB after "
                f"{1000 + rest:,} ({(after / after_1k - 1) * 100:+.1f}%). "
                f"Throughput over that run at 8 clients: {rest / took:,.0f} reviews/s; the server's own CPU: "
                f"{cpu / max(rest, 1) * 1e6:,.0f} µs per review (TLS, HTTP, JSON, mutation), whatever the load."
            )
            lines.append("| clients | review p50 | review p99 | healthz p50 | healthz p99 | p99 ratio |")
            lines.append("| --- | --- | --- | --- | --- | --- |")
            for clients in (1, 32):
                count = max(20, latency_requests // clients)
                base = load(webhook, ca_pem, clients, count, "/healthz")
                got = load(webhook, ca_pem, clients, count, "/mutate")
                lines.append(
                    f"| {clients} | {_pct(got, 0.5) * 1000:.2f} ms | {_pct(got, 0.99) * 1000:.2f} ms | "
                    f"{_pct(base, 0.5) * 1000:.2f} ms | {_pct(base, 0.99) * 1000:.2f} ms | "
                    f"{_pct(got, 0.99) / _pct(base, 0.99):.2f} |"
                )
            lines += ["", memory]
        finally:
            webhook.stop()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="a few thousand reviews (a smoke run)")
    options = parser.parse_args()
    reviews, per = (3000, 400) if options.quick else (options.reviews, 4000)
    for line in run(reviews, per):
        print(line, flush=True)


if __name__ == "__main__":
    main()
