"""Debian's real `docker-registry` on loopback for the audit's tests and bench, filled with `skopeo copy`.

Shared by tests/test_audit_registry.py (TLS, auth, one image), tests/test_audit_all.py (a whole
registry: pagination, each layer once, --cache) and bench/audit.py.  Every request the registry
serves is kept from its access log (`requests`), so a test can count how often a blob was fetched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

from testkit.waiting import wait_for_log

USER, PASSWORD = "auditor", "Reg1stryPassw0rd-x"
# docker-registry's access log: `127.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 ...`
ACCESS = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/[0-9.]+" (\d{3})')


def available() -> bool:
    return bool(shutil.which("docker-registry") and shutil.which("skopeo"))


class Registry:
    def __init__(
        self,
        root: Path,
        name: str,
        *,
        auth: bool = False,
        tls: tuple[Path, Path] | None = None,
        maxentries: int | None = None,
        data: Path | None = None,  # storage; two registries may serve the same one
    ) -> None:
        self.root = root
        self.data = data or root / "data"
        config = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.data}",
        ]
        config += ["  delete:", "    enabled: true"]
        if maxentries is not None:
            config += ["catalog:", f"  maxentries: {maxentries}"]
        config += ["http:", "  addr: 127.0.0.1:0", "  secret: test-only-http-secret"]
        if tls:
            config += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
        if auth:
            import bcrypt

            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode().replace("$2b$", "$2y$", 1)
            (root / f"{name}.htpasswd").write_text(f"{USER}:{hashed}\n")
            config += ["auth:", "  htpasswd:", "    realm: test", f"    path: {root / f'{name}.htpasswd'}"]
        (root / f"{name}.yml").write_text("\n".join(config) + "\n")
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status), in the order served
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(root / f"{name}.yml")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = wait_for_log(self.process, "listening on", timeout=300)
        self.address = re.search(r"listening on (127\.0\.0\.1:\d+)", line).group(1)  # type: ignore[union-attr]
        for stream in (self.process.stdout, self.process.stderr):
            threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            match = ACCESS.search(line)
            if match:
                with self._lock:
                    self.requests.append((match.group(1), match.group(2), int(match.group(3))))

    def served(self) -> list[tuple[str, str, int]]:
        with self._lock:
            return list(self.requests)

    def blob_gets(self, since: int = 0) -> dict[str, int]:
        """digest -> how many GETs of that blob the registry answered (any repository), from request `since`."""
        counts: dict[str, int] = {}
        for method, path, _status in self.served()[since:]:
            found = re.search(r"/blobs/(sha256:[0-9a-f]{64})", path)
            if method == "GET" and found:
                counts[found.group(1)] = counts.get(found.group(1), 0) + 1
        return counts

    def push(self, source: str, dest: str, *extra: str) -> None:
        """`skopeo copy SOURCE docker://ADDRESS/DEST` (plain http, no auth)."""
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *extra, source, f"docker://{self.address}/{dest}"],
            check=True,
            timeout=900,
            capture_output=True,
        )

    def upload_blob(self, repo: str, data: bytes) -> str:
        """A blob pushed as the API has it (POST an upload, PUT its bytes), whatever they are: -> its digest."""
        import hashlib
        import urllib.request
        from urllib.parse import urljoin

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = urllib.request.Request(f"http://{self.address}/v2/{repo}/blobs/uploads/", data=b"", method="POST")
        with urllib.request.urlopen(start, timeout=120) as answer:
            location = urljoin(f"http://{self.address}/", answer.headers["Location"])
        separator = "&" if "?" in location else "?"
        put = urllib.request.Request(f"{location}{separator}digest={digest}", data=data, method="PUT")
        put.add_header("Content-Type", "application/octet-stream")
        with urllib.request.urlopen(put, timeout=120) as answer:
            assert answer.status == 201, answer.status
        return digest

    def mount_blob(self, repo: str, digest: str, source: str) -> None:
        """Make `source`'s blob `digest` part of `repo` too, without sending it again (cross-repository mount)."""
        import urllib.request

        request = urllib.request.Request(
            f"http://{self.address}/v2/{repo}/blobs/uploads/?mount={digest}&from={source}", data=b"", method="POST"
        )
        with urllib.request.urlopen(request, timeout=120) as answer:
            assert answer.status == 201, answer.status

    def put_manifest(self, repo: str, tag: str, data: bytes, media_type: str) -> None:
        import urllib.request

        request = urllib.request.Request(f"http://{self.address}/v2/{repo}/manifests/{tag}", data=data, method="PUT")
        request.add_header("Content-Type", media_type)
        with urllib.request.urlopen(request, timeout=120) as answer:
            assert answer.status == 201, answer.status

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (to break one on purpose)."""
        hexdigest = digest.removeprefix("sha256:")
        return self.data / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)
