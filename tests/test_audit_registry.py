"""`stronghold-init audit docker://...` against Debian's real docker-registry on loopback.

One registry with htpasswd basic auth and TLS from trustme (images pushed with
`skopeo copy`), one plain-http registry on the same storage, and a small
token front (Bearer challenge, 307 redirects to "blob storage", a 503 and a
corrupted blob on demand) in front of the plain one.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_audit import DIRTY, DIRTY_FINDINGS, assert_no_value, audit, findings_of

from conftest import wait_for
from testkit.audit_builder import all_forms
from testkit.registry import PASSWORD, USER, Registry, available

pytestmark = pytest.mark.skipif(not available(), reason="needs docker-registry and skopeo")


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    trustme = pytest.importorskip("trustme")
    root = tmp_path_factory.mktemp("registry")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    cert.private_key_pem.write_to_path(str(root / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(root / "server.crt"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    secure = Registry(root, "secure", auth=True, tls=(root / "server.crt", root / "server.key"))
    plain = Registry(root, "plain", auth=False, tls=None)
    forms = all_forms(DIRTY, root / "images")
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", f"{USER}:{PASSWORD}",
         forms["docker-archive"], f"docker://{secure.address}/app/dirty:1"],
        check=True, timeout=900, capture_output=True,
    )  # fmt: skip
    digest = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}", "--format", "{{.Digest}}",
         f"docker://{secure.address}/app/dirty:1"],
        check=True, timeout=900, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    yield {"secure": secure.address, "plain": plain.address, "ca": root / "ca.pem", "root": root, "digest": digest}
    secure.stop()
    plain.stop()


def env_with(tmp_path: Path, **extra: str) -> dict[str, str]:

    env = {
        k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "REGISTRY_AUTH_FILE")
    }
    env["HOME"] = str(tmp_path)
    env.update(extra)
    return env


def test_tls_and_basic_auth_finds_exactly_what_the_archive_holds(registries: dict, tmp_path: Path) -> None:
    env = env_with(tmp_path, REQUESTS_CA_BUNDLE=str(registries["ca"]))
    target = f"docker://{registries['secure']}/app/dirty:1"
    result = audit("--format", "json", "--creds", f"{USER}:{PASSWORD}", target, env=env)
    assert result.returncode == 1, result.stderr
    assert findings_of(result) == DIRTY_FINDINGS
    assert json.loads(result.stdout)["targets"][0]["target"] == target
    assert_no_value(result, PASSWORD)
    by_digest = audit("--format", "json", "--creds", f"{USER}:{PASSWORD}",
                      f"docker://{registries['secure']}/app/dirty@{registries['digest']}", env=env)  # fmt: skip
    assert by_digest.returncode == 1 and findings_of(by_digest) == DIRTY_FINDINGS


def test_credentials_from_auth_files(registries: dict, tmp_path: Path) -> None:
    auth = {"auths": {registries["secure"]: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}
    (tmp_path / "auth.json").write_text(json.dumps(auth))
    target = f"docker://{registries['secure']}/app/dirty:1"
    env = env_with(tmp_path, REGISTRY_AUTH_FILE=str(tmp_path / "auth.json"))
    assert audit("--tls-verify=false", target, env=env).returncode == 1
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(json.dumps(auth))
    assert audit("--tls-verify=false", target, env=env_with(tmp_path)).returncode == 1


def test_refused_credentials_exit_77(registries: dict, tmp_path: Path) -> None:
    target = f"docker://{registries['secure']}/app/dirty:1"
    wrong = audit("--tls-verify=false", "--creds", f"{USER}:wrong-password", target, env=env_with(tmp_path))
    assert wrong.returncode == 77 and len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
    assert "wrong-password" not in wrong.stderr + wrong.stdout
    none = audit("--tls-verify=false", target, env=env_with(tmp_path))
    assert none.returncode == 77, none.stderr


def test_untrusted_certificate_and_unreachable_registry_exit_69(registries: dict, tmp_path: Path) -> None:
    target = f"docker://{registries['secure']}/app/dirty:1"
    untrusted = audit("--creds", f"{USER}:{PASSWORD}", target, env=env_with(tmp_path))
    assert untrusted.returncode == 69 and "TLS" in untrusted.stderr, untrusted.stderr
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = audit(f"docker://127.0.0.1:{port}/app/dirty:1", env=env_with(tmp_path))
    assert down.returncode == 69 and len(down.stderr.strip().splitlines()) == 1, down.stderr


def test_tls_verify_false_is_refused_off_loopback(tmp_path: Path) -> None:
    result = audit("--tls-verify=false", "docker://registry.example.com/app:1", env=env_with(tmp_path))
    assert result.returncode == 64 and "loopback" in result.stderr


def test_plain_http_registry_on_loopback_and_missing_tag(registries: dict, tmp_path: Path) -> None:
    result = audit("--format", "json", f"docker://{registries['plain']}/app/dirty:1", env=env_with(tmp_path))
    assert result.returncode == 1, result.stderr
    assert findings_of(result) == DIRTY_FINDINGS
    missing = audit(f"docker://{registries['plain']}/app/dirty:nope", env=env_with(tmp_path))
    assert missing.returncode == 66, missing.stderr


FAKE_HELPER = """#!/bin/sh
# A Docker credential helper as the protocol has it: `get`, the host on stdin, JSON on stdout.
[ "$1" = get ] || exit 2
host=$(cat)
printf '%s\n' "$host" >> "$HOME/helper-calls"
env > "$HOME/helper-env"
case "$HOME/$host" in
  */{known}) printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{password}"}}' "$host" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


def _dead(pid: int) -> bool:
    """Gone, or a zombie (killed; its parent has not reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _helper_home(tmp_path: Path, name: str, script: str, config: dict) -> dict[str, str]:
    """HOME with ~/.docker/config.json, and PATH with a real docker-credential-NAME executable first."""

    bindir = tmp_path / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    helper = bindir / f"docker-credential-{name}"
    helper.write_text(script)
    helper.chmod(0o755)
    (tmp_path / ".docker").mkdir(exist_ok=True)
    (tmp_path / ".docker" / "config.json").write_text(json.dumps(config))
    return env_with(tmp_path, PATH=f"{bindir}:{os.environ['PATH']}", AUDIT_SENTINEL="not-for-helpers")


@pytest.mark.parametrize("field", ["credHelpers", "credsStore"])
def test_docker_credential_helpers(registries: dict, tmp_path: Path, field: str) -> None:
    host = str(registries["secure"])
    script = FAKE_HELPER.format(known=host, user=USER, password=PASSWORD)
    config = {"auths": {host: {}}, "credHelpers": {host: "fake"}} if field == "credHelpers" else {"credsStore": "fake"}
    env = _helper_home(tmp_path, "fake", script, config)
    target = f"docker://{host}/app/dirty:1"
    result = audit("--format", "json", "--tls-verify=false", target, env=env)
    assert result.returncode == 1, result.stderr
    assert findings_of(result) == DIRTY_FINDINGS
    assert (tmp_path / "helper-calls").read_text().splitlines() == [host]  # asked once, for this host
    helper_env = (tmp_path / "helper-env").read_text()
    assert "AUDIT_SENTINEL" not in helper_env and f"HOME={tmp_path}" in helper_env  # a minimal environment
    assert_no_value(result, PASSWORD)


def test_credential_helper_failures_exit_77_without_its_output(registries: dict, tmp_path: Path) -> None:
    host = str(registries["secure"])
    target = f"docker://{host}/app/dirty:1"
    config = {"credHelpers": {host: "fake"}}
    # Nothing stored for this host: anonymous, which this registry refuses.
    unknown = FAKE_HELPER.format(known="elsewhere:1", user=USER, password=PASSWORD)
    result = audit("--tls-verify=false", target, env=_helper_home(tmp_path / "a", "fake", unknown, config))
    assert result.returncode == 77 and "wants credentials" in result.stderr, result.stderr
    # A helper that fails prints its secret-ish output: never shown.
    failing = f"#!/bin/sh\necho 'keychain locked for {PASSWORD}'\nexit 3\n"
    result = audit("--tls-verify=false", target, env=_helper_home(tmp_path / "b", "fake", failing, config))
    assert result.returncode == 77 and "exit 3" in result.stderr, result.stderr
    assert_no_value(result, PASSWORD)
    # A helper that floods its output is stopped at the bound, not read to the end.
    flood = "#!/bin/sh\nexec yes stronghold-audit-flood\n"
    result = audit("--tls-verify=false", target, env=_helper_home(tmp_path / "c", "fake", flood, config))
    assert result.returncode == 77 and "more than" in result.stderr, result.stderr
    assert "stronghold-audit-flood" not in result.stderr + result.stdout
    # A helper that never answers (and keeps a child holding its stdout) is killed with its child at the deadline.
    hang = '#!/bin/sh\necho $$ > "$HOME/pid"\nsleep 1000 &\necho $! > "$HOME/child"\nwait\n'
    result = audit("--tls-verify=false", target, env=_helper_home(tmp_path / "e", "fake", hang, config))
    assert result.returncode == 77 and "did not answer within" in result.stderr, result.stderr
    for name in ("pid", "child"):
        pid = int((tmp_path / "e" / name).read_text())
        wait_for(lambda pid=pid: _dead(pid), what=f"the helper's {name} to be killed")  # its child: init reaps it
    # Named but not installed.
    result = audit("--tls-verify=false", target, env=_helper_home(tmp_path / "d", "other", "", config))
    assert result.returncode == 77 and "docker-credential-fake" in result.stderr and "PATH" in result.stderr


def test_zstd_layers_from_the_registry(tmp_path: Path) -> None:
    """Pushed as skopeo pushes with --dest-compress-format zstd (podman push --compression-format zstd).

    A registry of its own: skopeo would otherwise reuse the gzip blobs it pushed to the shared one.
    """
    registry = Registry(tmp_path, "zstd", auth=False, tls=None)
    try:
        source = all_forms(DIRTY, tmp_path / "images")["oci-archive"]
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-compress-format", "zstd", "--dest-tls-verify=false",
             source, f"docker://{registry.address}/app/zstd:1"],
            check=True, timeout=900, capture_output=True,
        )  # fmt: skip
        request = urllib.request.Request(
            f"http://{registry.address}/v2/app/zstd/manifests/1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            manifest = json.loads(answer.read())
        assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
        result = audit("--format", "json", f"docker://{registry.address}/app/zstd:1", env=env_with(tmp_path))
        assert result.returncode == 1, result.stderr
        assert findings_of(result) == DIRTY_FINDINGS
    finally:
        registry.stop()


class TokenFront(http.server.ThreadingHTTPServer):
    """A registry front with the Bearer-token challenge: /token checks basic auth and issues a
    token; /v2/ calls need it; blob GETs are 307-redirected to the backend (another host name,
    as blob storage is); `fail_once` answers one 503; `corrupt` flips a byte of every blob."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.token = "front-token-" + base64.b16encode(__import__("os").urandom(8)).decode()
        self.fail_once = False
        self.corrupt = False
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), _FrontHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _FrontHandler(http.server.BaseHTTPRequestHandler):
    server: TokenFront

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        front = self.server
        front.seen.append(self.path)
        if self.path.startswith("/token"):
            expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if (
                self.headers.get("Authorization") != expected
                or "scope=repository%3Aapp%2Fdirty%3Apull" not in self.path
            ):
                return self._send(401, b"{}")
            return self._send(200, json.dumps({"token": front.token}).encode())
        if self.headers.get("Authorization") != f"Bearer {front.token}":
            realm = f"http://{front.address}/token"
            return self._send(401, b"{}", {"WWW-Authenticate": f'Bearer realm="{realm}",service="front"'})
        if front.fail_once:
            front.fail_once = False
            return self._send(503, b"busy")
        if "/blobs/" in self.path and not front.corrupt:
            port = front.backend.rsplit(":", 1)[1]
            return self._send(307, b"", {"Location": f"http://localhost:{port}{self.path}"})
        request = urllib.request.Request(
            f"http://{front.backend}{self.path}", headers={"Accept": self.headers.get("Accept", "")}
        )
        with urllib.request.urlopen(request, timeout=300) as answer:
            body = answer.read()
            if front.corrupt and "/blobs/" in self.path and len(body) > 600:
                body = body[:500] + bytes([body[500] ^ 1]) + body[501:]
            self._send(200, body, {"Content-Type": answer.headers.get("Content-Type", "")})

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def front(registries: dict) -> Iterator[TokenFront]:
    server = TokenFront(str(registries["plain"]))
    yield server
    server.shutdown()
    server.server_close()


def test_bearer_challenge_redirects_and_a_retry(front: TokenFront, tmp_path: Path) -> None:
    front.fail_once = True
    result = audit("--format", "json", "--creds", f"{USER}:{PASSWORD}", f"docker://{front.address}/app/dirty:1",
                   env=env_with(tmp_path))  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert findings_of(result) == DIRTY_FINDINGS
    assert any(path.startswith("/token?") for path in front.seen)
    assert sum("/blobs/" in path for path in front.seen) >= 4  # config + 3 layers, each via a redirect
    assert_no_value(result, PASSWORD, front.token)


def test_bearer_refused_and_corrupted_blob(front: TokenFront, tmp_path: Path) -> None:
    target = f"docker://{front.address}/app/dirty:1"
    refused = audit("--creds", f"{USER}:nope-nope", target, env=env_with(tmp_path))
    assert refused.returncode == 77, refused.stderr
    front.corrupt = True
    corrupted = audit("--creds", f"{USER}:{PASSWORD}", target, env=env_with(tmp_path))
    assert corrupted.returncode == 65 and "digest" in corrupted.stderr, corrupted.stderr
