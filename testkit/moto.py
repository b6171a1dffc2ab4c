"""A real moto server (moto[server], a test dependency) for the AWS tests and benchmarks.

moto runs as a subprocess (`python -m testkit.moto`), bound by the OS to a
free loopback port (ThreadedMotoServer with port 0; it prints the port it
got), so nothing here picks a port.  It records every request it serves
(MOTO_ENABLE_RECORDING) to a file the tests count calls in, and checks SigV4
signatures and IAM policies once `enforce_auth()` has closed the free calls
(moto's INITIAL_NO_AUTH_ACTION_COUNT, set at run time through its /moto-api/reset-auth).

    moto = Moto(workdir)             # auth off: seed freely (boto3 clients from moto.client())
    moto.enforce_auth()              # from now on every call must be signed by a known key and allowed
    moto.calls()                     # [(service action), ...] since the last reset_calls()
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from testkit.waiting import read_line

SEED_KEYS = ("AKIDSEEDSEEDSEEDSEED", "seed-secret-key-for-the-free-calls")  # any key works while auth is off


class Moto:
    def __init__(self, workdir: Path, *, auth: bool = True) -> None:
        self.recording = workdir / f"moto-recording-{os.getpid()}-{id(self)}.jsonl"
        env = dict(os.environ)
        env.update(
            {
                # Free calls until enforce_auth(): then SigV4 and IAM policies are checked on every call.
                "INITIAL_NO_AUTH_ACTION_COUNT": "inf",
                "MOTO_ENABLE_RECORDING": "true",
                "MOTO_RECORDER_FILEPATH": str(self.recording),
                "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            }
        )
        for name in list(env):
            if name.startswith("AWS_"):
                env.pop(name)  # moto must not pick up a real identity or endpoint of the machine
        self._log = open(workdir / f"moto-{id(self)}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "testkit.moto"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        line = read_line(self.process, timeout=120)
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError(f"moto did not start (said {line!r}); see {self._log.name}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth = auth

    def client(self, service: str, region: str = "us-east-1", keys: tuple[str, str] = SEED_KEYS):  # -> boto3 client
        import boto3  # (moto's own dependency; the tests use it only to seed and to check, never the product)

        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id=keys[0],
            aws_secret_access_key=keys[1],
        )

    def api(self, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(
            self.url + path,
            data=body,
            method="POST" if body is not None else "GET",
            headers={"Content-Type": "text/plain"},  # (a form type would hide the body from moto's request.data)
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.read()

    def enforce_auth(self) -> None:
        """Every call from now on is authenticated (SigV4) and authorised (IAM policies)."""
        if self.auth:
            self.api("/moto-api/reset-auth", b"0")

    def reset_calls(self) -> None:
        self.recording.write_text("")

    def calls(self) -> list[str]:
        """'service Action' of each request served since reset_calls() (moto's request recorder)."""
        out = []
        if not self.recording.exists():
            return out
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            headers = {k.lower(): v for k, v in entry.get("headers", {}).items()}
            target = headers.get("x-amz-target")
            if target:
                out.append(target.replace(".", " ", 1))
                continue
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                import base64

                body = base64.b64decode(body).decode("utf-8", "replace")
            from urllib.parse import parse_qs

            action = parse_qs(body).get("Action", [""])[0]
            if action:
                out.append(f"sts {action}")
        return out

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self._log.close()


def _serve() -> None:
    import signal
    import threading

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(f"port {server.get_host_and_port()[1]}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    _serve()
