"""Start-up with many references: 1,000 against 3, same command, alternating."""

from __future__ import annotations

import os
import statistics
import subprocess
import time

from harness import DevProxyProcess, stronghold_binary


def _once(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([stronghold_binary(), "--no-refresh", "--", "true"], env=env, check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def many_references(count: int, runs: int) -> dict[str, float]:
    secrets_text = "".join(f"app/secret{i}=value{i}\n" for i in range(count))
    with DevProxyProcess(secrets_text) as proxy:
        base = {
            "PATH": os.environ["PATH"],
            "STRONGHOLD_PROXY_URL": proxy.url,
            "STRONGHOLD_BOOTSTRAP_TOKEN": proxy.token,
        }
        few = {**base, **{f"S{i}": f"stronghold://app/secret{i}" for i in range(3)}}
        many = {**base, **{f"S{i}": f"stronghold://app/secret{i}" for i in range(count)}}
        _once(few), _once(many)  # warm caches
        small, large = [], []
        for _ in range(runs):
            small.append(_once(few))
            large.append(_once(many))
    return {
        "count": count,
        "few_ms": statistics.median(small) * 1000,
        "many_ms": statistics.median(large) * 1000,
        "many_min_ms": min(large) * 1000,
        "many_max_ms": max(large) * 1000,
        "ratio": statistics.median(large) / statistics.median(small),
    }
