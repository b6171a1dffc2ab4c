"""What a template costs at start: `--no-refresh -- true` with 3 `_FILE` references, with and without
one `--template` that uses all three (json, yaml and url filters), alternating in the same run.

Prints medians, min and max, and the median ratio (with / without; docs/templates.md: the
template modules are imported only when a template is given, so without one the start is as before).

    python bench/templates.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DevProxyProcess, stronghold_binary
from startup import alternate, print_samples

TEMPLATE = """{
  "stripe": {{ stronghold://stripe/live | json }},
  "database": {"url": "postgres://app:{{ stronghold://postgres/app | url }}@db/app"},
  "npm": {{ stronghold://npm/publish | yaml }}
}
"""


def measure(runs: int) -> dict[str, list[float]]:
    workdir = tempfile.mkdtemp()
    token_dir = tempfile.mkdtemp(dir="/dev/shm")
    src = os.path.join(workdir, "config.json.tmpl")
    with open(src, "w") as handle:
        handle.write(TEMPLATE)
    try:
        with DevProxyProcess() as proxy:
            env = {
                "PATH": os.environ["PATH"],
                "STRONGHOLD_PROXY_URL": proxy.url,
                "STRONGHOLD_BOOTSTRAP_TOKEN": proxy.token,
                "STRONGHOLD_DIR": token_dir,
                "STRIPE_KEY_FILE": "stronghold://stripe/live",
                "DB_PASSWORD_FILE": "stronghold://postgres/app",
                "NPM_TOKEN_FILE": "stronghold://npm/publish",
            }
            base = [stronghold_binary(), "--no-refresh"]
            commands = {
                "3 _FILE refs, no template": [*base, "--", "true"],
                "3 _FILE refs + 1 template": [*base, "--template", f"{src}:config.json", "--", "true"],
            }
            return alternate(commands, env, runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(token_dir, ignore_errors=True)


def report(samples: dict[str, list[float]]) -> float:
    print_samples(samples, width=30)
    without, with_template = (statistics.median(v) for v in samples.values())
    ratio = with_template / without
    print(f"ratio (median, with / without) {ratio:.2f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    report(measure(args.runs))


if __name__ == "__main__":
    main()
