"""Container figures: what stronghold-init adds to the example Node image, and to its start.

    python bench/container.py              # prints the section; --write puts it in docs/benchmarks.md

Builds examples/Dockerfile for real with the test harness (testkit/containers.py:
podman on a scratch storage, the local Debian bookworm base with nodejs, npm,
python3 and python3-venv, no network), then:

- bytes: the uncompressed size of each layer of a `podman save` archive, and
  which of them exist for stronghold-init (its Python check and its venv);
- start: `podman run` until the app's first line on stdout ("ready"), for the
  same image with stronghold-init as entrypoint (2 references from a dev proxy
  on loopback) and with the app as entrypoint and its values given with -e.
  Runs alternate; medians, min and max; the ratio is of medians from this run.

Needs root and podman, buildah, skopeo, runc, mmdebstrap (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # testkit/, shared with the tests (never tests/ itself)
sys.path.insert(0, str(ROOT / "bench"))

from harness import DevProxyProcess  # noqa: E402

from testkit import containers  # noqa: E402

PROBE = ROOT / "testkit" / "container_probe.js"
SECTION = "## In a container: the example Node image"


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.2f}"


def first_line_seconds(env: containers.ContainerEnv, args: list[str]) -> float:
    """Seconds from `podman run` to the app's first line on stdout; the container is then removed."""
    name = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    started = time.monotonic()
    process = env.popen("run", "--rm", "--name", name, *args, stderr=subprocess.DEVNULL)
    line = process.stdout.readline()  # type: ignore[union-attr]
    elapsed = time.monotonic() - started
    env.podman("rm", "--force", "--time", "0", name, check=False)
    process.wait(timeout=120)
    if '"event":"ready"' not in line:
        raise RuntimeError(f"the app did not start: {line!r}")
    return elapsed


def measure(rounds: int) -> list[str]:
    lines: list[str] = []
    env = containers.ContainerEnv()
    try:
        image = containers.build_example_image(env, ROOT)
        archive = env.save(image.tag, env.scratch / "shop-api.tar")
        _, layers = containers.archive_layers(archive)
        inspect = json.loads(env.podman("image", "inspect", image.base).stdout)
        added = layers[len(inspect[0]["RootFS"]["Layers"]) :]
        ours = [layer for layer in added if "python3 -m venv" in layer.created_by or "ensurepip" in layer.created_by]
        lines += [
            SECTION,
            "",
            "Written by `python bench/container.py --write`. Base: local Debian bookworm minbase with nodejs, npm,",
            "python3 and python3-venv (built offline by testkit/containers.py); sizes are uncompressed layer tars",
            "from `podman save --format docker-archive`.",
            "",
            "| layer (Dockerfile step above the base) | bytes | MB | for stronghold-init |",
            "| --- | --- | --- | --- |",
        ]
        for layer in added:
            step = re.sub(r"\s+", " ", layer.created_by.replace("|", "\\|"))[:90]
            mine = "yes" if layer in ours else ""
            lines.append(f"| `{step}` | {layer.size} | {_mb(layer.size)} | {mine} |")
        total_ours = sum(layer.size for layer in ours)
        lines += [
            "",
            f"stronghold-init adds **{_mb(total_ours)} MB** to the image (its venv with tenacity and python-dotenv,",
            "pip and setuptools removed in the same layer), on a base that already has Python. On",
            "`node:20-bookworm-slim`, which has none, Debian's python3 and python3-venv come on top (the `apt-get`",
            "branch of the same step; not measured here: no registry).",
            "",
        ]
        with DevProxyProcess() as proxy:
            token = env.scratch / "bootstrap-token"
            token.write_text(proxy.token)
            os.chown(token, 1000, 1000)
            token.chmod(0o400)
            common = ["--network=host", "--volume", f"{PROBE}:/probe/probe.js:ro"]
            with_init = [
                *common,
                "--tmpfs",
                "/run/stronghold:mode=0700,U",
                "--volume",
                f"{token}:/run/secrets/stronghold-bootstrap:ro",
                "--env",
                f"STRONGHOLD_PROXY_URL={proxy.url}",
                image.tag,
                "node",
                "/probe/probe.js",
            ]
            without = [
                *common,
                "--entrypoint",
                "node",
                "--env",
                "STRIPE_SECRET_KEY=sk_test_bench",
                "--env",
                "DATABASE_PASSWORD_FILE=",
                image.tag,
                "/probe/probe.js",
            ]
            samples: dict[str, list[float]] = {"with": [], "without": []}
            first_line_seconds(env, without)  # warm the page cache for both
            for _ in range(rounds):
                samples["with"].append(first_line_seconds(env, with_init))
                samples["without"].append(first_line_seconds(env, without))
        lines += [
            f"Container start to app-ready (`podman run` until the app's first line), {rounds} alternating runs:",
            "",
            "| entrypoint | median ms | min | max |",
            "| --- | --- | --- | --- |",
        ]
        for name, label in (("with", "stronghold-init, 2 references"), ("without", "the app itself (-e values)")):
            values = [value * 1000 for value in samples[name]]
            lines.append(f"| {label} | {statistics.median(values):.0f} | {min(values):.0f} | {max(values):.0f} |")
        ratio = statistics.median(samples["with"]) / statistics.median(samples["without"])
        lines += ["", f"Ratio with / without: **{ratio:.2f}**.", ""]
    finally:
        env.teardown()
    return lines


def write(section: list[str], path: Path) -> None:
    """Replace (or append) the container section of docs/benchmarks.md, leaving the rest as bench/run.py wrote it."""
    text = path.read_text() if path.exists() else ""
    start = text.find(SECTION)
    if start >= 0:
        following = text.find("\n## ", start + len(SECTION))
        text = text[:start] + (text[following + 1 :] if following >= 0 else "")
    path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(section).rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--write", action="store_true", help="put the section in docs/benchmarks.md")
    args = parser.parse_args()
    section = measure(args.rounds)
    print("\n".join(section))
    if args.write:
        write(section, ROOT / "docs" / "benchmarks.md")


if __name__ == "__main__":
    main()
