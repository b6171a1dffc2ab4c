"""Shared pieces of the benchmarks: the binary, a dev proxy process."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEV_SECRETS = "stripe/live=sk_test_bench\npostgres/app=pg_bench\nnpm/publish=npm_bench\n"


def stronghold_binary() -> str:
    found = shutil.which("stronghold-init", path=str(Path(sys.executable).parent)) or shutil.which("stronghold-init")
    if not found:
        raise SystemExit("stronghold-init is not installed: pip install .")
    return found


class DevProxyProcess:
    """`stronghold-init dev-proxy` on a free loopback port, for the duration of a with-block."""

    def __init__(self, secrets_text: str = DEV_SECRETS, ttl: int = 300) -> None:
        self.token = secrets.token_hex(16)  # hex: a leading "-" would read as an option
        self._secrets_text = secrets_text
        self._ttl = ttl
        self.url = ""

    def __enter__(self) -> DevProxyProcess:
        self._dir = tempfile.mkdtemp()
        path = os.path.join(self._dir, "secrets.env")
        with open(path, "w") as handle:
            handle.write(self._secrets_text)
        self._process = subprocess.Popen(
            [
                stronghold_binary(),
                "dev-proxy",
                "--secrets",
                path,
                "--listen",
                "127.0.0.1:0",
                "--ttl",
                str(self._ttl),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "STRONGHOLD_DEV_TOKEN": self.token},  # not in argv, where `ps` shows it
        )
        self.url = self._process.stdout.readline().strip()  # type: ignore[union-attr]
        if not self.url:
            raise RuntimeError("dev proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)
