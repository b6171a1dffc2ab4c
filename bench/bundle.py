"""The Python-free bundle, Nuitka against PyInstaller, in one run on this machine.

    python bench/bundle.py                 # builds both, twice each (reproducibility), then measures
    python bench/bundle.py --runs 10 --builds 1   # quicker: one build per tool

For each tool: build time (scripts/build-bundle, from scratch: the first
build with empty compiler caches, the second with warm ones), size on disk
and gzipped, whether two builds give the same tarball checksum, start-up
(`--no-refresh -- true`, 3 references, loopback dev proxy) and supervisor RSS
(VmRSS, and RssAnon: its private part), each against the pip-installed command in a fresh venv (`pip install .`, not
editable) measured in the same run, commands alternating. Writes
docs/bundle-figures.md (docs/bundle.md explains the choice).
Needs `pip install '.[bundle]'` plus gcc and patchelf.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DevProxyProcess
from startup import three_references, time_once
from supervisor import _rss_kib, _Supervised

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("nuitka", "pyinstaller")


def build(tool: str, out: Path, caches: Path | None) -> dict[str, object]:
    """One build from scratch; with `caches`, Nuitka's and ccache's caches start empty there (a cold build)."""
    env = dict(os.environ)
    if caches is not None:
        env.update(NUITKA_CACHE_DIR=str(caches / "nuitka"), CCACHE_DIR=str(caches / "ccache"))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build-bundle"), "--tool", tool, "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"build-bundle --tool {tool} failed:\n{done.stderr[-3000:]}")
    return measure_output(out, time.monotonic() - started)


def measure_output(out: Path, seconds: float) -> dict[str, object]:
    tarball = next(out.glob("stronghold-init-*.tar.gz"))
    directory = out / "stronghold-init"
    files = [path for path in directory.rglob("*") if path.is_file() and not path.is_symlink()]
    return {
        "seconds": seconds,
        "binary": str(directory / "stronghold-init"),
        "disk_mb": sum(path.stat().st_size for path in files) / 1e6,
        "files": len(files),
        "gzip_mb": tarball.stat().st_size / 1e6,
        "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest(),
        # Per file, to name exactly what differs when two builds' tarballs do not match.
        "file_sums": {
            str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files
        },
    }


def reference_venv(directory: Path) -> str:
    """The pip-installed command, as a user gets it: a fresh venv, `pip install .` (not editable)."""
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    subprocess.run([str(directory / "bin" / "pip"), "install", "-q", str(ROOT)], check=True)
    return str(directory / "bin" / "stronghold-init")


def startup(binaries: dict[str, str], runs: int) -> dict[str, list[float]]:
    with DevProxyProcess() as proxy:
        env = three_references(proxy)
        commands = {name: [binary, "--no-refresh", "--", "true"] for name, binary in binaries.items()}
        for argv in commands.values():
            time_once(argv, env)  # warm the page cache
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                samples[name].append(time_once(argv, env))
    return samples


def supervisor_rss(binaries: dict[str, str]) -> dict[str, tuple[float, float]]:
    """(VmRSS, RssAnon) in MiB of each as the parent of a waiting child, 3 references issued.

    RssAnon is the process's private memory (heap, Python objects); the rest of VmRSS is pages of
    files it maps (the executable, shared libraries), clean and shared with every process that maps
    the same file, which the kernel may drop under pressure and read back.
    """
    result = {}
    with DevProxyProcess() as proxy:
        env = {"PATH": os.environ["PATH"], "STRONGHOLD_PROXY_URL": proxy.url, "STRONGHOLD_BOOTSTRAP_TOKEN": proxy.token}
        env.update({"A": "stronghold://stripe/live", "B": "stronghold://postgres/app", "C": "stronghold://npm/publish"})
        for name, binary in binaries.items():
            runner = _Supervised([binary, "--"], env)
            try:
                result[name] = (_rss_kib(runner.process.pid)[0] / 1024, _anon_kib(runner.process.pid) / 1024)
            finally:
                runner.stop()
    return result


def _anon_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise RuntimeError(f"no RssAnon in /proc/{pid}/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--builds", type=int, default=2, help="builds per tool (2 checks reproducibility)")
    parser.add_argument(
        "--prebuilt",
        action="append",
        default=[],
        metavar="TOOL=OUT[,OUT2]",
        help="measure existing scripts/build-bundle outputs instead of building (build seconds then unknown)",
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "bundle-figures.md"))
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="stronghold-bench-bundle-"))
    try:
        builds: dict[str, list[dict[str, object]]] = {}
        for item in args.prebuilt:
            tool, _, outs = item.partition("=")
            builds[tool] = [measure_output(Path(out), float("nan")) for out in outs.split(",")]
        for tool in (tool for tool in TOOLS if tool not in builds):
            # The first build is cold (empty compiler caches), the next ones reuse what it cached:
            # the same checksum from both says the caches do not change the result either.
            builds[tool] = [
                build(tool, scratch / f"{tool}-{n}", scratch / f"{tool}-caches" if n == 0 else None)
                for n in range(args.builds)
            ]
            print(f"{tool}: built in {[round(float(b['seconds'])) for b in builds[tool]]} s", flush=True)
        binaries = {"venv (pip install .)": reference_venv(scratch / "venv")}
        binaries.update({f"bundle, {tool}": str(builds[tool][0]["binary"]) for tool in TOOLS})
        samples = startup(binaries, args.runs)
        rss = supervisor_rss(binaries)
    finally:
        lines = report(builds, samples, rss, args) if "rss" in locals() else []
        shutil.rmtree(scratch, ignore_errors=True)
    if not lines:
        raise SystemExit("no figures: a measurement failed")
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {args.output}")


def report(builds, samples, rss, args) -> list[str]:
    venv = "venv (pip install .)"
    base_ms = statistics.median(samples[venv]) * 1000
    lines = [
        "# Bundle figures: Nuitka against PyInstaller",
        "",
        f"Written by `python bench/bundle.py --runs {args.runs} --builds {args.builds}` on"
        f" {datetime.date.today().isoformat()}: {platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end.",
        "Every ratio is against the venv install (`pip install .`) measured in the same run, commands alternating.",
        "",
        "| | start-up median ms (min-max) | ratio to venv | supervisor RSS MiB | ratio | of it private MiB"
        " | ratio | on disk MB (files) | gzipped MB | build s | same checksum twice |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, values in samples.items():
        median, low, high = (1000 * f(values) for f in (statistics.median, min, max))
        (total, private), (venv_total, venv_private) = rss[name], rss[venv]
        row = f"| {name} | {median:.1f} ({low:.1f}-{high:.1f}) | {median / base_ms:.2f} | {total:.1f}"
        row += f" | {total / venv_total:.2f} | {private:.1f} | {private / venv_private:.2f}"
        tool = name.removeprefix("bundle, ")
        if tool in builds:
            first = builds[tool][0]
            same = "—" if len(builds[tool]) < 2 else ("yes" if len({b["sha256"] for b in builds[tool]}) == 1 else "no")
            seconds = "/".join(
                "—" if b["seconds"] != b["seconds"] else f"{float(b['seconds']):.0f}" for b in builds[tool]
            )
            row += f" | {first['disk_mb']:.1f} ({first['files']}) | {first['gzip_mb']:.1f} | {seconds} | {same} |"
        else:
            row += " | — | — | — | — |"
        lines.append(row)
    lines += ["", "Build seconds: the first build with empty compiler caches, then with warm ones."]
    lines += [
        "",
        "Supervisor RSS is VmRSS of stronghold-init as the parent of a waiting child; private is its RssAnon"
        " (heap and Python objects). The rest is pages of mapped files (the executable, shared libraries):"
        " clean, shared by every process mapping the same file, and dropped by the kernel under pressure.",
    ]
    lines += ["", "Tarball checksums:"]
    for tool, runs in builds.items():
        lines += [f"- {tool}: " + ", ".join(f"`{str(b['sha256'])[:16]}`" for b in runs)]
        differing = differing_files(runs)
        if differing:
            lines += [f"  - files that differ between its builds: {', '.join(f'`{name}`' for name in differing)}"]
    return lines


def differing_files(runs: list[dict[str, object]]) -> list[str]:
    """The bundle files whose content is not the same in every build (or missing from one)."""
    sums = [run["file_sums"] for run in runs]
    names = sorted(set().union(*sums))
    return [name for name in names if len({run.get(name) for run in sums}) > 1]


if __name__ == "__main__":
    main()
