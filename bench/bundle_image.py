"""What stronghold-init adds to the Node example image: the bundle against Python in the image.

    sudo python bench/bundle_image.py      # root, podman and friends (testkit/containers.py); a few minutes

Both built for real with the container harness, offline:
- bundle: examples/Dockerfile on a Debian Node base without Python; the
  growth is the `COPY --from=stronghold-init /opt/stronghold` layer.
- Python in the image: bench/python-in-image.Dockerfile (the example before
  the bundle) on the Debian Node base with python3 and python3-venv; the
  growth is the Debian Python packages (dpkg's Installed-Size of every
  python3* / libpython3* package, as apt would add them to a Python-free
  Node image) plus the venv layer.
Writes docs/bundle-image.md (bench/run.py folds it into docs/benchmarks.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # testkit/, shared with the tests (never tests/ itself)

from testkit import containers  # noqa: E402


def layers(env: containers.ContainerEnv, image: str) -> list[tuple[str, int]]:
    history = json.loads(env.podman("history", "--no-trunc", "--format", "json", image).stdout)
    # podman 4 spells the key CreatedBy; createdBy is kept for other versions.
    return [(entry.get("CreatedBy", entry.get("createdBy", "")), int(entry.get("size", 0))) for entry in history]


def python_packages_bytes(env: containers.ContainerEnv, image: str) -> int:
    listing = env.run(
        image,
        "-c",
        "dpkg-query -W -f='${Installed-Size} ${Package}\\n' | grep -E ' (lib)?python3'",
        options=["--entrypoint", "sh"],
        check=True,
    ).stdout
    return sum(int(line.split()[0]) for line in listing.splitlines() if line.strip()) * 1024


def measure() -> dict[str, float]:
    env = containers.ContainerEnv()
    try:
        example = containers.build_example_image(env, ROOT)
        bundle_layer = sum(size for created, size in layers(env, example.tag) if "/opt/stronghold" in created)

        python_base = env.base("debian-node-py")
        python_image = env.build(
            containers.build_context(env, ROOT),  # the example's context: the repository's files and wheelhouse/
            "localhost/shop-api-python:bench",
            dockerfile=ROOT / "bench" / "python-in-image.Dockerfile",
            build_args={"BASE": python_base, "BUILDER": python_base, "WHEELHOUSE": "wheelhouse"},
        )
        venv_layer = sum(size for created, size in layers(env, python_image) if "python3 -m venv" in created)
        debian_python = python_packages_bytes(env, python_base)
    finally:
        env.teardown()
    return {
        "bundle_mb": bundle_layer / 1e6,
        "debian_python_mb": debian_python / 1e6,
        "venv_mb": venv_layer / 1e6,
        "python_total_mb": (debian_python + venv_layer) / 1e6,
        "ratio": bundle_layer / (debian_python + venv_layer),
    }


def table(figures: dict[str, float]) -> list[str]:
    return [
        "| what the Node image gains | MB |",
        "| --- | --- |",
        f"| Python in the image: Debian's python3 + python3-venv packages | {figures['debian_python_mb']:.1f} |",
        f"| Python in the image: the venv layer (stronghold-init and its libraries) | {figures['venv_mb']:.1f} |",
        f"| **Python in the image, total** | **{figures['python_total_mb']:.1f}** |",
        f"| **the bundle's layer** (`COPY --from=stronghold-init /opt/stronghold`) | **{figures['bundle_mb']:.1f}** |",
        "",
        f"The bundle adds **{figures['ratio']:.2f}x** what Python in the image adds.",
    ]


def main() -> None:
    lines = ["# Image growth: the bundle against Python in the Node image", "", *table(measure())]
    (ROOT / "docs" / "bundle-image.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
