"""`stronghold-init completion bash|zsh|fish`: scripts the real shells accept and that
complete subcommands and options; shtab is imported by `completion` alone; a
reader leaving early ends it quietly.  The shells are real (zsh and fish are
installed by .ci/run).
"""

from __future__ import annotations

import os
import subprocess

from conftest import PYTHON, base_env, run


def test_bash_completion_completes_subcommands_and_options() -> None:
    script = run(["completion", "bash"], base_env()).stdout
    probe = (
        script
        + '\nCOMP_WORDS=(stronghold-init dev-); COMP_CWORD=1; _shtab_stronghold_init; echo "sub: ${COMPREPLY[*]}"'
        + "\nCOMP_WORDS=(stronghold-init dev-proxy --tok); COMP_CWORD=2; _shtab_stronghold_init;"
        + ' echo "opt: ${COMPREPLY[*]}"\ncomplete -p stronghold-init\n'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "sub: dev-proxy" in done.stdout
    assert "--token" in done.stdout.split("opt: ")[1] and "--token-file" in done.stdout
    assert "complete " in done.stdout and "stronghold-init" in done.stdout


def test_fish_completion_completes_subcommands() -> None:
    script = run(["completion", "fish"], base_env()).stdout
    done = subprocess.run(
        ["fish", "--no-config", "-c", script + '\ncomplete -C "stronghold-init dev-"'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dev-proxy")


def test_zsh_completion_is_valid_zsh() -> None:
    result = run(["completion", "zsh"], base_env())
    assert result.code == 0 and "#compdef stronghold-init" in result.stdout
    done = subprocess.run(["zsh", "-n"], input=result.stdout, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_completion_needs_a_known_shell() -> None:
    result = run(["completion", "powershell"], base_env())
    assert result.code == 64


def test_completion_costs_the_entrypoint_nothing() -> None:
    """shtab is imported by `completion` alone, never on the start path."""
    probe = "import sys; from injector import cli; cli.parse(['--', 'true']); print('shtab' in sys.modules)"
    done = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "False"


def test_output_into_a_closed_pipe_is_not_an_internal_error() -> None:
    """`stronghold-init completion bash | head -1`: the reader leaving early ends it quietly, as SIGPIPE would."""
    from conftest import STRONGHOLD

    reader_r, writer_w = os.pipe()
    os.close(reader_r)  # nobody will read: the first write fails with EPIPE
    done = subprocess.run(
        [STRONGHOLD, "completion", "bash"], stdout=writer_w, stderr=subprocess.PIPE, text=True, timeout=60
    )
    os.close(writer_w)
    assert "internal error" not in done.stderr, done.stderr
    assert done.returncode == 141, (done.returncode, done.stderr)
