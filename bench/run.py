"""Every benchmark figure in one run; writes docs/benchmarks.md.

    python bench/run.py            # the full run (several minutes)
    python bench/run.py --quick    # a smoke run: tiny sizes, figures meaningless

Each figure is a ratio or a side-by-side pair from this one run on this
machine: commands alternate and medians are taken, with min and max.
Needs `requests` in the venv (the start-up baseline) and Debian's `tini`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import container
import herd
import masking
import openbao
import scale
import startup
import supervisor

ROOT = Path(__file__).resolve().parent.parent


def _ms(value: float) -> str:
    return "—" if value != value else f"{value:.1f}"  # NaN: no child to time


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError:
        return "not installed"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the harness runs")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    quick = args.quick
    lines: list[str] = []

    def emit(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    emit("# Benchmarks")
    emit()
    emit(f"Written by `python bench/run.py{' --quick' if quick else ''}` on {datetime.date.today().isoformat()}.")
    emit(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}."
    )
    emit(f"Versions: {_version([startup.stronghold_binary(), '--version'])}; tini: {_version(['tini', '--version'])}.")
    emit(
        "Each figure was measured in this one run on this machine, against the baseline named beside it"
        " (measured in the same run, commands alternating; medians, with min and max)."
    )
    if quick:
        emit()
        emit("**Quick run: sizes are tiny and the figures mean nothing.**")

    emit()
    emit("## Start-up: `stronghold-init --no-refresh -- true`, 3 references, loopback dev proxy")
    emit()
    samples = startup.measure(3 if quick else 40)
    emit("| command | median ms | min | max |")
    emit("| --- | --- | --- | --- |")
    for name, values in samples.items():
        median, low, high = (1000 * f(values) for f in (statistics.median, min, max))
        emit(f"| `{name}` | {median:.1f} | {low:.1f} | {high:.1f} |")
    ours, baseline = (statistics.median(v) for v in samples.values())
    emit()
    emit(f"Ratio to `import requests` (the medians of this run): **{ours / baseline:.2f}**.")

    emit()
    emit("## Start-up with 1,000 references")
    emit()
    many = scale.many_references(50 if quick else 1000, 2 if quick else 15)
    emit(
        f"`--no-refresh -- true` with {many['count']} references: median {many['many_ms']:.1f} ms"
        f" (min {many['many_min_ms']:.1f}, max {many['many_max_ms']:.1f}) against {many['few_ms']:.1f} ms with 3:"
        f" **{many['ratio']:.2f}x**."
    )

    emit()
    emit("## Beside `bao agent`: 3 KV secrets from a `bao server -dev`")
    emit()
    agent = openbao.compare(2 if quick else 20)
    emit("| command | start -> child runs, median ms | start -> exit, median ms | min | max | peak RSS MiB |")
    emit("| --- | --- | --- | --- | --- | --- |")
    for name, figures in agent.items():
        emit(
            f"| {name} | {_ms(figures['child_median_ms'])} | {figures['exit_median_ms']:.1f}"
            f" | {figures['exit_min_ms']:.1f} | {figures['exit_max_ms']:.1f} | {figures['peak_rss_mib']:.1f} |"
        )
    ours_exec = agent["stronghold-init exec (--no-refresh)"]["child_median_ms"]
    theirs_exec = agent["bao agent exec (env_template)"]["child_median_ms"]
    ours_files = agent["stronghold-init fetch (files)"]["exit_median_ms"]
    theirs_files = agent["bao agent template (files)"]["exit_median_ms"]
    emit()
    emit(
        f"Exec mode, start -> child: stronghold-init is **{theirs_exec / ours_exec:.1f}x** faster than `bao agent`"
        f". Files: **{theirs_files / ours_files:.1f}x**."
    )

    emit()
    emit("## AWS: 3 `aws-sm://` references against moto, beside 3 `stronghold://` against the dev proxy")
    emit()
    import aws_startup  # bench/aws_startup.py: moto (SigV4 and IAM checked) on loopback

    for line in aws_startup.report(aws_startup.measure(2 if quick else 30)):
        emit(line)

    emit()
    emit("## Signal forwarding latency and supervisor memory, side by side with tini")
    emit()
    signals = supervisor.signal_latency_and_rss(20 if quick else 500)
    emit("| supervisor | p50 ms | p99 ms | max ms | RSS MiB | peak RSS MiB |")
    emit("| --- | --- | --- | --- | --- | --- |")
    for name, figures in signals.items():
        emit(
            f"| {name} | {figures['p50_ms']:.3f} | {figures['p99_ms']:.3f} | {figures['max_ms']:.3f}"
            f" | {figures['rss_mib']:.1f} | {figures['peak_rss_mib']:.1f} |"
        )
    emit()
    emit("SIGUSR1 sent to the supervisor until the child's handler runs (same Python child for both); RSS is the")
    emit("supervisor's own, with that child waiting.")

    emit()
    emit("## Idle CPU: 20 references, ttl 300 s")
    emit()
    idle = supervisor.idle_cpu(20, 2 if quick else 60)
    emit(
        f"{idle['cpu_seconds'] * 1000:.1f} ms of CPU in {idle['seconds']:.0f} s: "
        f"**{idle['percent_of_a_core']:.4f}% of a core** (every thread of the supervisor, from schedstat)."
    )

    emit()
    emit("## Refresh soak: files at ttl 1-2 s, a reader checking every token it sees")
    emit()
    soak = supervisor.rotation_soak(20 if quick else 1000)
    emit(
        f"{soak['rotations']} rotations in {soak['seconds']:.0f} s, {soak['reads']} reads: "
        f"**{soak['expired_moments']} moments with an expired token in place**."
    )

    emit()
    emit("## Herd: many processes start at once against one dev proxy")
    emit()
    crowd = herd.herd(10 if quick else 200, 6 if quick else 30)
    emit(
        f"{crowd['started']} of {crowd['processes']} started ({crowd['alive_at_first_refresh']} still running at"
        f" their first refresh); starts spread over {crowd['start_spread_s']:.1f} s. First refreshes spread over"
        f" **{crowd['refresh_spread_s']:.1f} s = {crowd['refresh_spread_pct_of_ttl']:.0f}%"
        f" of the {crowd['ttl']} s ttl**"
        f", each at {crowd['refresh_at_min_pct']:.1f}-{crowd['refresh_at_max_pct']:.1f}% of its own ttl;"
        f" at most **{crowd['max_refreshes_in_100ms']}** refreshes in any 100 ms."
    )

    masking.report(emit, quick)

    emit()
    import audit  # bench/audit.py: the image audit's throughput, memory and recall

    for line in audit.report(quick):
        emit(line)

    emit()
    emit("## Python-free bundle")
    emit()
    # Its builds take minutes, so bench/bundle.py and bench/bundle_image.py (root, podman) write
    # their own figures; they are carried over here as last measured.
    for name in ("bundle-figures.md", "bundle-image.md"):
        figures = ROOT / "docs" / name
        if figures.is_file():
            for line in figures.read_text().splitlines():
                emit(line.replace("# ", "### ", 1) if line.startswith("# ") else line)
            emit()

    output = Path(args.output)
    # bench/container.py (root, podman, minutes of image builds) writes its own section: keep it.
    kept = output.read_text().partition(container.SECTION)[2] if output.exists() else ""
    if kept and not quick:
        lines += ["", container.SECTION + kept.rstrip("\n")]
    output.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
