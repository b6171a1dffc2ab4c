"""Start-up cost: `stronghold-init --no-refresh -- true` with 3 references vs `import requests`.

Both run from the same venv, alternating, so machine noise hits both alike.
Prints medians, min and max, and the ratio of the medians.

    python bench/startup.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DevProxyProcess, stronghold_binary


def three_references(proxy: DevProxyProcess) -> dict[str, str]:
    """The start-up benchmarks' environment: three references to the dev proxy, nothing else but PATH."""
    return {
        "PATH": os.environ["PATH"],
        "STRONGHOLD_PROXY_URL": proxy.url,
        "STRONGHOLD_BOOTSTRAP_TOKEN": proxy.token,
        "STRIPE_KEY": "stronghold://stripe/live",
        "DB_PASSWORD": "stronghold://postgres/app",
        "NPM_TOKEN": "stronghold://npm/publish",
    }


def time_once(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(runs: int) -> dict[str, list[float]]:
    with DevProxyProcess() as proxy:
        env = three_references(proxy)
        commands = {
            "stronghold-init --no-refresh -- true (3 refs)": [stronghold_binary(), "--no-refresh", "--", "true"],
            'python -c "import requests"': [sys.executable, "-c", "import requests"],
        }
        return alternate(commands, env, runs)


def alternate(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Each command timed `runs` times, in turn (a load change hits all alike), after one warm-up each."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # warm the page cache once
        time_once(argv, env)
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(time_once(argv, env))
    return samples


def print_samples(samples: dict[str, list[float]], width: int = 50) -> None:
    for name, values in samples.items():
        print(
            f"{name:<{width}} median {statistics.median(values) * 1000:7.1f} ms"
            f"  min {min(values) * 1000:7.1f}  max {max(values) * 1000:7.1f}"
        )


def report(samples: dict[str, list[float]]) -> float:
    print_samples(samples)
    ours, baseline = (statistics.median(v) for v in samples.values())
    ratio = ours / baseline
    print(f"ratio (median) {ratio:.2f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    report(measure(args.runs))


if __name__ == "__main__":
    main()
