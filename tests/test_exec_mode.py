"""Exec mode (SPEC section 6): with --no-refresh, or with no reference,
stronghold-init replaces itself with the command, keeping its pid."""

from __future__ import annotations

import json

from conftest import PYTHON, TestProxy, base_env, run, start

PID_CHILD = [PYTHON, "-c", "import json, os; print(json.dumps({'pid': os.getpid(), 'env': dict(os.environ)}))"]


def test_no_refresh_execs_and_keeps_the_pid(proxy: TestProxy, shm_dir, processes) -> None:
    env = base_env(proxy, A="stronghold://stripe/live", B_FILE="stronghold://postgres/app")
    process = start(["--no-refresh", "--dir", str(shm_dir), "--", *PID_CHILD], env)
    processes.append(process)
    out, _ = process.communicate(timeout=30)
    report = json.loads(out)
    assert process.returncode == 0
    assert report["pid"] == process.pid, "the command must be exec'd in place"
    assert report["env"]["A"] == proxy.issued_values[0]
    # Nothing stays behind to clean up: the file is left for the command.
    assert (shm_dir / "B").read_text() == proxy.issued_values[1]
    assert "/v1/leases/revoke" not in proxy.paths()


def test_no_references_execs_without_contacting_anyone(processes) -> None:
    process = start(["--", *PID_CHILD], base_env(STRONGHOLD_PROXY_URL="http://127.0.0.1:1", PLAIN="x"))
    processes.append(process)
    out, err = process.communicate(timeout=30)
    report = json.loads(out)
    assert report["pid"] == process.pid
    assert report["env"]["PLAIN"] == "x"
    assert "STRONGHOLD_PROXY_URL" not in report["env"]
    assert err == ""


def test_exit_code_passes_through_exec(proxy: TestProxy) -> None:
    result = run(["--no-refresh", "--", "sh", "-c", "exit 42"], base_env(proxy, A="stronghold://stripe/live"))
    assert result.code == 42


def test_supervised_run_removes_files_and_revokes(proxy: TestProxy, shm_dir) -> None:
    env = base_env(proxy, A="stronghold://stripe/live", B_FILE="stronghold://postgres/app")
    result = run(["--dir", str(shm_dir), "--", "sh", "-c", 'cat "$B_FILE" > /dev/null && exit 5'], env)
    assert result.code == 5, result.stderr
    assert not shm_dir.exists()
    revokes = proxy.bodies("/v1/leases/revoke")
    assert len(revokes) == 1
    assert sorted(revokes[0]["lease_ids"]) == sorted(proxy.leases_issued)
