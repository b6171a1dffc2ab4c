"""The webhook as a real subprocess over real TLS, for tests and bench/webhook.py.

`WebhookProcess` starts `stronghold-init webhook --listen 127.0.0.1:0` with
a trustme certificate, reads the URL from its first stdout line and drains
stderr into `lines` (a full pipe would stall its logger).  `client()` is a
kept-alive `http.client.HTTPSConnection` that trusts the test CA, as the API
server keeps its connections.  `review()` builds an AdmissionReview from a pod.
"""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import subprocess
import threading
import uuid
from pathlib import Path

from testkit.waiting import read_line


def write_certificate(ca: object, directory: Path, stem: str = "server") -> tuple[Path, Path]:
    """A leaf for 127.0.0.1 from the trustme CA `ca`: (cert chain, key) files."""
    cert = ca.issue_cert("127.0.0.1", "localhost")  # type: ignore[attr-defined]
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key_path.write_bytes(cert.private_key_pem.bytes())
    return cert_path, key_path


class WebhookProcess:
    def __init__(
        self,
        binary: str,
        cert: Path,
        key: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        init_image: str = "registry.example.com/stronghold-init:0.1.0",
    ) -> None:
        self.process = subprocess.Popen(
            [binary, "webhook", "--listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key),
             "--init-image", init_image, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        first = read_line(self.process, timeout=60).strip()
        if not first.startswith("https://"):
            self.process.kill()
            raise AssertionError(f"the webhook did not start: {first!r} {self.process.stderr.read()}")  # type: ignore[union-attr]
        self.url = first
        self.host, port = first.removeprefix("https://").rsplit(":", 1)
        self.port = int(port)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:  # type: ignore[union-attr]
            self.lines.append(line)

    def client(self, ca_pem: bytes | str, timeout: float = 30) -> http.client.HTTPSConnection:
        context = ssl.create_default_context(cadata=ca_pem if isinstance(ca_pem, str) else ca_pem.decode())
        return http.client.HTTPSConnection(self.host, self.port, context=context, timeout=timeout)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=30)
        self._drain.join(timeout=10)
        return code


def review(pod: dict | None, operation: str = "CREATE", kind: str = "Pod", uid: str | None = None) -> dict:
    group = "" if kind == "Pod" else "apps"
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": kind.lower() + "s"},
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "dryRun": False,
        },
    }


def post(connection: http.client.HTTPSConnection, body: bytes | dict) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request("POST", "/mutate", body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()
