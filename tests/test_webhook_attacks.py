"""The webhook attacked as a subprocess over real TLS (review 24): what a hostile client sends.

Each case is a request the API server never makes but anything that reaches
the Service can: a body nested past the JSON parser's recursion limit, a
Content-Length in digits that are not ASCII, a pod carrying fifty thousand
ephemeral containers.  Each must get a clean answer (a 400 with one line, or a
valid AdmissionReview) quickly, with no traceback on stderr, and the server
must go on serving.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_webhook import SHOP_POD, _still_up, ca_pem

from conftest import STRONGHOLD
from testkit.webhook import WebhookProcess, post, review, write_certificate

trustme = pytest.importorskip("trustme")


@pytest.fixture(scope="module")
def ca() -> object:
    return trustme.CA()


@pytest.fixture
def webhook(ca: object, tmp_path: Path) -> Iterator[WebhookProcess]:
    cert, key = write_certificate(ca, tmp_path)
    process = WebhookProcess(str(STRONGHOLD), cert, key, "--audit", "warn", "--registry-budget", "1")
    yield process
    assert process.stop() == 0
    assert not any("Traceback" in line for line in process.lines), "".join(process.lines)


def raw(webhook: WebhookProcess, ca: object, data: bytes) -> bytes:
    """Send `data` as is over TLS and read the answer until the server closes (it does after a 400)."""
    context = ssl.create_default_context(cadata=ca_pem(ca).decode())
    with (
        socket.create_connection((webhook.host, webhook.port), timeout=60) as plain,
        context.wrap_socket(plain, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(data)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        return answer


def one_line_400(answer: bytes, said: str) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert said in body.decode() and body.count(b"\n") == 1, body


def test_json_nested_past_the_parsers_recursion_limit_is_a_400(webhook: WebhookProcess, ca: object) -> None:
    deep = b'{"apiVersion": "admission.k8s.io/v1", "request": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    head = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(deep)
    one_line_400(raw(webhook, ca, head + deep), "JSON")
    _still_up(webhook, ca)


@pytest.mark.parametrize(
    "length", ["\u00b2", "1" * 5000, "+12", " 1 2"], ids=["superscript", "5000 digits", "+", "spaced"]
)
def test_a_content_length_that_is_not_plain_ascii_digits_is_a_400(
    webhook: WebhookProcess, ca: object, length: str
) -> None:
    head = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: " + length.encode("latin-1") + b"\r\n\r\n"
    one_line_400(raw(webhook, ca, head), "Content-Length")
    _still_up(webhook, ca)


def test_a_pod_with_fifty_thousand_ephemeral_containers_is_refused_at_once(webhook: WebhookProcess, ca: object) -> None:
    """Every image of the pod is audited, ephemeral containers' too: they count against the cap."""
    pod = json.loads(json.dumps(SHOP_POD))
    pod["spec"]["ephemeralContainers"] = [{"name": f"e{i}", "image": f"127.0.0.1:1/e{i}"} for i in range(50_000)]
    began = time.monotonic()
    status, body = post(webhook.client(ca_pem(ca), timeout=120), review(pod))
    assert status == 400 and b"50002 containers" in body, body[:300]
    assert time.monotonic() - began < 8  # was over 30 s of one core, the GIL held against every other review
    _still_up(webhook, ca)


def test_a_handshake_sent_a_byte_at_a_time_is_cut_off_at_the_deadline(webhook: WebhookProcess, ca: object) -> None:
    """Each byte well within the 5 s read timeout, a real 8 KB ClientHello: the handshake as a whole has
    a deadline (ssl's own, the socket timeout, and the reaper's REQUEST_SECONDS behind it)."""
    from injector.modes.webhook import REQUEST_SECONDS

    slow = socket.create_connection((webhook.host, webhook.port), timeout=60)
    began = time.monotonic()
    record = _client_hello()
    assert len(record) > 8000
    cut = False
    try:
        for byte in record:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                cut = True
                break
            slow.settimeout(2)  # the pace: under the server's 5 s read timeout, and it is the wait for a close
            try:
                if slow.recv(1) == b"":
                    cut = True
                    break
            except TimeoutError:
                pass
            except OSError:
                cut = True
                break
            if time.monotonic() - began > REQUEST_SECONDS + 20:
                break
    finally:
        slow.close()
    assert cut and time.monotonic() - began < REQUEST_SECONDS + 20, time.monotonic() - began


def _client_hello() -> bytes:
    """A real ClientHello, made long by its ALPN list (the server must read it whole to answer)."""
    context = ssl.create_default_context()
    context.set_alpn_protocols([f"p{i:03d}".ljust(200, "x") for i in range(40)])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_a_registry_error_as_long_as_the_registry_likes_is_cut_short_in_the_answer_and_the_log(
    ca: object, tmp_path: Path
) -> None:
    """An index offering 20,000 made-up platforms makes the registry client's error list them all:
    the refusal, the warning and the log line carry a bounded text, not 400 KB of the registry's."""
    import hashlib
    import http.server
    import threading

    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "0" * 64,
                 "size": 1, "platform": {"os": f"os{i:05d}", "architecture": "x"}}
                for i in range(20_000)
            ],
        }
    ).encode()  # fmt: skip
    digest = "sha256:" + hashlib.sha256(index).hexdigest()

    class Registry(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            body = index if "/manifests/" in self.path else b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cert, key = write_certificate(ca, tmp_path)
    webhook = WebhookProcess(
        str(STRONGHOLD), cert, key, "--tls-verify=false", "--audit", "warn", "--registry-budget", "30"
    )
    try:
        pod = json.loads(json.dumps(SHOP_POD))
        del pod["spec"]["containers"][0]["command"]
        pod["spec"]["containers"][0]["image"] = f"127.0.0.1:{server.server_address[1]}/app@{digest}"
        status, body = post(webhook.client(ca_pem(ca), timeout=120), review(pod))
        assert status == 200, body[:300]
        response = json.loads(body)["response"]
        assert response["allowed"] is False and "os00000" in response["status"]["message"]
        assert len(response["status"]["message"]) < 1024, len(response["status"]["message"])
        assert all(len(w) <= 256 for w in response["warnings"]), [len(w) for w in response["warnings"]]
    finally:
        assert webhook.stop() == 0
        server.shutdown()
        server.server_close()
    assert max(len(line) for line in webhook.lines) < 2048
