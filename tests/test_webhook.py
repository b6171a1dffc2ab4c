"""`stronghold-init webhook` as a subprocess over real TLS (a trustme CA), fed AdmissionReviews.

What a cluster's API server would do, without one: POST the review over a
kept-alive HTTPS connection, check the uid, base64-decode the JSONPatch, apply
it with `jsonpatch` and validate the result with `kubernetes-validate`.  Then
what the API server never does but an attacker or a bug might: bodies that are
not JSON, not reviews, too big, pods with 500 containers, a client that sends
a byte at a time; each gets a 400 (or a closed connection) and the server goes
on serving.  Certificate rotation replaces the files by rename, as
cert-manager's Secret volume does, and the next connection sees the new one.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from conftest import STRONGHOLD, wait_for
from testkit.webhook import WebhookProcess, post, review, write_certificate

trustme = pytest.importorskip("trustme")
K8S = kubernetes_validate.latest_version()

SHOP_POD = yaml.safe_load(
    """
apiVersion: v1
kind: Pod
metadata:
  generateName: shop-api-
  labels: {app: shop-api, stronghold.dev/inject: "true"}
  annotations:
    stronghold.dev/proxy-url: https://stronghold.platform.svc:8443
    stronghold.dev/auth: kubernetes
    stronghold.dev/role: shop-api
spec:
  serviceAccountName: shop-api
  containers:
    - name: api
      image: registry.example.com/shop-api:1.0.0
      command: [node, server.js]
      env:
        - {name: STRIPE_SECRET_KEY, value: "stronghold://stripe/live?scope=charges:write&ttl=15m"}
        - {name: LOG_LEVEL, value: info}
    - name: metrics
      image: registry.example.com/exporter:2
      args: [--port, "9100"]
"""
)


@pytest.fixture(scope="module")
def ca() -> object:
    return trustme.CA()


@pytest.fixture
def webhook(ca: object, tmp_path: Path) -> Iterator[WebhookProcess]:
    cert, key = write_certificate(ca, tmp_path)
    process = WebhookProcess(str(STRONGHOLD), cert, key)
    yield process
    assert process.stop() == 0


def ca_pem(ca: object) -> bytes:
    return ca.cert_pem.bytes()  # type: ignore[attr-defined]


def answer(status: int, body: bytes, uid: str) -> dict:
    assert status == 200, body
    document = json.loads(body)
    assert document["apiVersion"] == "admission.k8s.io/v1" and document["kind"] == "AdmissionReview"
    assert document["response"]["uid"] == uid
    return document["response"]


def test_healthz_and_an_opted_in_pod_is_patched_into_a_valid_pod(webhook: WebhookProcess, ca: object) -> None:
    connection = webhook.client(ca_pem(ca))
    connection.request("GET", "/healthz")
    health = connection.getresponse()
    assert health.status == 200 and health.read() == b"ok\n"
    document = review(SHOP_POD, uid="uid-shop")
    response = answer(*post(connection, document), "uid-shop")  # same kept-alive connection
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    pod = jsonpatch.apply_patch(copy.deepcopy(SHOP_POD), patch)
    kubernetes_validate.validate(pod, K8S, strict=True)
    api = pod["spec"]["containers"][0]
    assert api["command"] == ["/stronghold/bin/stronghold-init", "--"] and api["args"] == ["node", "server.js"]
    env = {e["name"]: e["value"] for e in api["env"]}
    assert env["STRONGHOLD_ROLE"] == "shop-api" and env["STRONGHOLD_AUTH"] == "kubernetes"
    assert pod["spec"]["containers"][1].get("command") is None  # no reference, not named: left alone
    assert pod["spec"]["initContainers"][0]["name"] == "stronghold-install"
    assert any("metrics" in w for w in response["warnings"])
    assert pod["metadata"]["annotations"]["stronghold.dev/status"] == "injected"
    # the result, reviewed again (a retried create), is left alone: idempotent
    again = answer(*post(connection, review(pod, uid="uid-again")), "uid-again")
    assert again == {"uid": "uid-again", "allowed": True}


@pytest.mark.parametrize(
    ("case", "document"),
    [
        ("unlabelled", review({**SHOP_POD, "metadata": {"name": "plain"}})),
        ("UPDATE", review(SHOP_POD, operation="UPDATE")),
        ("DELETE", review(None, operation="DELETE")),
    ],
)
def test_pods_that_are_not_ours_are_allowed_with_no_patch(
    webhook: WebhookProcess, ca: object, case: str, document: dict
) -> None:
    uid = document["request"]["uid"]
    assert answer(*post(webhook.client(ca_pem(ca)), document), uid) == {"uid": uid, "allowed": True}, case


def test_a_container_without_command_or_annotation_is_refused_saying_what_to_set(
    webhook: WebhookProcess, ca: object
) -> None:
    pod = copy.deepcopy(SHOP_POD)
    del pod["spec"]["containers"][0]["command"]
    pod["spec"]["containers"][0]["image"] = "127.0.0.1:1/shop-api:1.0.0"  # nothing listens there
    document = review(pod)
    response = answer(*post(webhook.client(ca_pem(ca)), document), document["request"]["uid"])
    assert response["allowed"] is False and "patch" not in response
    message = response["status"]["message"]
    assert "set its command" in message and "stronghold.dev/command.api" in message
    pod["metadata"]["annotations"]["stronghold.dev/command.api"] = '["node", "server.js"]'
    document = review(pod)
    response = answer(*post(webhook.client(ca_pem(ca)), document), document["request"]["uid"])
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"


def _bad(webhook: WebhookProcess, ca: object, body: bytes) -> tuple[int, bytes]:
    connection = webhook.client(ca_pem(ca))
    try:
        return post(connection, body)
    except (ConnectionError, ssl.SSLError, OSError) as exc:  # a closed connection is an accepted answer
        return 0, repr(exc).encode()
    finally:
        connection.close()


def _still_up(webhook: WebhookProcess, ca: object) -> None:
    connection = webhook.client(ca_pem(ca))
    connection.request("GET", "/healthz")
    assert connection.getresponse().status == 200
    assert webhook.process.poll() is None


def _many_containers() -> dict:
    pod = copy.deepcopy(SHOP_POD)
    pod["spec"]["containers"] = [
        {"name": f"c{i}", "image": "busybox", "command": ["true"], "env": [{"name": "T", "value": "stronghold://t"}]}
        for i in range(500)
    ]
    return review(pod)


@pytest.mark.parametrize(
    ("case", "body", "said"),
    [
        ("not JSON", b"{this is not json", "not JSON"),
        ("a JSON list", b"[1, 2, 3]", "AdmissionReview"),
        ("not a review", json.dumps({"apiVersion": "v1", "kind": "Pod"}).encode(), "AdmissionReview"),
        ("v1beta1", json.dumps({**review(SHOP_POD), "apiVersion": "admission.k8s.io/v1beta1"}).encode(), "v1"),
        ("no uid", json.dumps({**review(SHOP_POD), "request": {"operation": "CREATE"}}).encode(), "uid"),
        ("not a Pod", json.dumps(review(SHOP_POD, kind="Deployment")).encode(), "not about a Pod"),
        ("no object", json.dumps(review(None)).encode(), "no Pod object"),
        ("500 containers", json.dumps(_many_containers()).encode(), "500 containers"),
        ("4 MiB", json.dumps({**review(SHOP_POD), "pad": "x" * (4 * 1024 * 1024)}).encode(), "at most"),
    ],
)
def test_bad_input_is_answered_400_with_one_line_and_the_server_stays_up(
    webhook: WebhookProcess, ca: object, case: str, body: bytes, said: str
) -> None:
    status, text = _bad(webhook, ca, body)
    assert status in (400, 0), (case, status, text)
    if status == 400:
        line = text.decode()
        assert said in line and line.count("\n") == 1, (case, line)
    _still_up(webhook, ca)


def test_a_slowloris_client_is_cut_off_and_others_are_served_meanwhile(webhook: WebhookProcess, ca: object) -> None:
    context = ssl.create_default_context(cadata=ca_pem(ca).decode())
    raw = socket.create_connection((webhook.host, webhook.port), timeout=60)
    slow = context.wrap_socket(raw, server_hostname="127.0.0.1")
    started = time.monotonic()
    head = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
    closed = False
    for byte in head:  # a byte every 0.5 s: each read is within the read timeout, the request never ends
        try:
            slow.sendall(bytes([byte]))
        except OSError:
            closed = True
            break
        _still_up(webhook, ca)  # served while the slow one dawdles (and paces the loop)
        if time.monotonic() - started > 40:
            break
        slow.settimeout(0.5)
        try:
            if slow.recv(1) == b"":
                closed = True
                break
        except TimeoutError:
            pass
        except OSError:
            closed = True
            break
    assert closed, "the slow client was never cut off"
    assert time.monotonic() - started < 40  # within the request deadline (10 s) and the reaper's slack
    _still_up(webhook, ca)


def test_a_certificate_replaced_by_rename_is_served_to_the_next_connection(ca: object, tmp_path: Path) -> None:
    cert, key = write_certificate(ca, tmp_path)
    webhook = WebhookProcess(str(STRONGHOLD), cert, key)
    try:
        kept = webhook.client(ca_pem(ca))
        kept.request("GET", "/healthz")
        assert kept.getresponse().read() == b"ok\n"
        first = _served_certificate(webhook, ca)
        new_ca = trustme.CA()
        new_cert, new_key = write_certificate(new_ca, tmp_path, "next")
        # cert-manager's Secret volume swaps a symlinked directory; a rename is the same change of inode
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        wait_for(lambda: _served_certificate(webhook, new_ca) != first, timeout=60, what="the new certificate")
        served = _served_certificate(webhook, new_ca)
        assert served == ssl.PEM_cert_to_DER_cert(cert.read_text().split("-----END CERTIFICATE-----")[0]
                                                  + "-----END CERTIFICATE-----\n")  # fmt: skip
        kept.request("GET", "/healthz")  # the connection made before is unaffected
        assert kept.getresponse().read() == b"ok\n"
        assert any("reloaded" in line for line in webhook.lines)
        # a half-rotated pair (a new cert with the old key) does not load: the last good pair is kept
        odd_cert, _ = write_certificate(trustme.CA(), tmp_path, "odd")
        os.replace(odd_cert, cert)

        def refused() -> bool:
            _served_certificate(webhook, new_ca)  # a new connection is what makes it look at the files
            return any("previous certificate" in line for line in webhook.lines)

        wait_for(refused, timeout=60, interval=0.2, what="the half-rotated pair refused")
        assert _served_certificate(webhook, new_ca) == served
    finally:
        assert webhook.stop() == 0


def _served_certificate(webhook: WebhookProcess, trusted: object) -> bytes | None:
    context = ssl.create_default_context(cadata=ca_pem(trusted).decode())
    try:
        with (
            socket.create_connection((webhook.host, webhook.port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            return tls.getpeercert(binary_form=True)
    except ssl.SSLError:
        return None  # not (yet) a certificate this CA signed


def test_an_unloadable_certificate_at_start_is_one_line_and_78(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "c.pem").write_text("not a certificate\n")
    done = subprocess.run(
        [str(STRONGHOLD), "webhook", "--listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "c.pem"),
         "--tls-key", str(tmp_path / "c.pem"), "--init-image", "x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 78, done.stderr
    assert done.stderr.count("\n") == 1 and "--tls-cert" in done.stderr and done.stdout == ""


def test_an_encrypted_key_is_one_line_and_78_never_a_pass_phrase_prompt(ca: object, tmp_path: Path) -> None:
    """OpenSSL's default would ask "Enter PEM pass phrase:" on the terminal (and wait there, in a pod
    with a tty, holding the lock every new connection takes); the webhook has no pass phrase to give."""
    import subprocess

    from cryptography.hazmat.primitives import serialization

    cert, key = write_certificate(ca, tmp_path)
    loaded = serialization.load_pem_private_key(key.read_bytes(), None)
    encryption = serialization.BestAvailableEncryption(b"pass-phrase")
    key.write_bytes(loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    done = subprocess.run(
        [str(STRONGHOLD), "webhook", "--listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key),
         "--init-image", "x"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 78, done.stderr
    assert done.stderr.count("\n") == 1 and "--tls-key" in done.stderr and "pass phrase" not in done.stderr


def test_malformed_creds_are_a_usage_error_at_start_not_a_refusal_of_every_pod(tmp_path: Path) -> None:
    import subprocess

    cert, key = write_certificate(trustme.CA(), tmp_path)
    planted = "no-colon-PLANTED-7f3a"
    done = subprocess.run(
        [str(STRONGHOLD), "webhook", "--listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key),
         "--init-image", "x", "--creds", planted],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 64, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "--creds" in done.stderr and done.stdout == ""
    assert "PLANTED" not in done.stderr


def test_a_kept_alive_connection_outlives_one_read_timeout(webhook: WebhookProcess, ca: object) -> None:
    """The API server keeps idle connections and does not retry a POST on one the server dropped."""
    connection = webhook.client(ca_pem(ca))
    connection.request("GET", "/healthz")
    assert connection.getresponse().read() == b"ok\n"
    socket_before = connection.sock
    time.sleep(7)  # the stimulus, not a synchronisation: idle past the 5 s read timeout (the idle limit is 30 s)
    document = review(SHOP_POD)
    response = answer(*post(connection, document), document["request"]["uid"])
    assert response["allowed"] is True and connection.sock is socket_before


def test_a_client_that_never_handshakes_is_cut_off_at_the_deadline(webhook: WebhookProcess, ca: object) -> None:
    silent = [socket.create_connection((webhook.host, webhook.port), timeout=60) for _ in range(3)]
    started = time.monotonic()
    _still_up(webhook, ca)
    for raw in silent:
        assert raw.recv(1) == b""  # closed by the server: a handshake read waits 5 s, the whole 10 s
        raw.close()
    assert time.monotonic() - started < 40


def test_a_flood_of_idle_and_silent_connections_past_the_cap_does_not_keep_a_review_out(
    webhook: WebhookProcess, ca: object
) -> None:
    """Handshaken connections (idle, or a slowloris's request half sent) and ones that never handshake,
    MAX_CONNECTIONS of each, all held open: a real review on a new connection is still answered, the
    flood's oldest evicted."""
    from injector.modes.webhook import MAX_CONNECTIONS

    context = ssl.create_default_context(cadata=ca_pem(ca).decode())
    held = []
    for index in range(MAX_CONNECTIONS):
        raw = socket.create_connection((webhook.host, webhook.port), timeout=60)
        held.append(context.wrap_socket(raw, server_hostname="127.0.0.1"))
        if index % 2:
            held[-1].sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    held += [socket.create_connection((webhook.host, webhook.port), timeout=60) for _ in range(MAX_CONNECTIONS)]
    try:
        began = time.monotonic()
        document = review(SHOP_POD)
        response = answer(*post(webhook.client(ca_pem(ca)), document), document["request"]["uid"])
        assert response["allowed"] is True and response["patchType"] == "JSONPatch"
        assert time.monotonic() - began < 8  # not after the flood's 10 s deadlines ran out
        held[0].settimeout(30)
        assert held[0].recv(1) == b""  # the oldest idle one made room
    finally:
        for raw in held:
            raw.close()
    _still_up(webhook, ca)


def test_sigterm_answers_the_review_under_way_before_the_process_ends(ca: object, tmp_path: Path) -> None:
    """A rolling update stops a replica while the API server waits on it: that review is answered."""
    import threading

    registry = socket.socket()  # a registry that takes the connection and never says a word
    registry.bind(("127.0.0.1", 0))
    registry.listen(8)
    cert, key = write_certificate(ca, tmp_path)
    webhook = WebhookProcess(str(STRONGHOLD), cert, key, "--registry-budget", "3")
    pod = copy.deepcopy(SHOP_POD)
    del pod["spec"]["containers"][0]["command"]
    pod["spec"]["containers"][0]["image"] = f"127.0.0.1:{registry.getsockname()[1]}/shop-api:1"
    document = review(pod)
    result: list[object] = []

    def ask() -> None:
        try:
            result.append(post(webhook.client(ca_pem(ca), timeout=60), document))
        except OSError as exc:
            result.append(exc)

    asking = threading.Thread(target=ask)
    try:
        asking.start()
        registry.settimeout(60)
        dialled, _ = registry.accept()  # the review is under way: it waits on this registry
        webhook.process.send_signal(signal.SIGTERM)
        asking.join(timeout=60)
        assert result and isinstance(result[0], tuple), result
        response = answer(*result[0], document["request"]["uid"])
        assert response["allowed"] is False and "budget" in response["status"]["message"]
        assert webhook.process.wait(timeout=60) == 0
        dialled.close()
    finally:
        webhook.stop()
        registry.close()


def _healthz_ok(webhook: WebhookProcess, ca: object) -> bool:
    try:
        _still_up(webhook, ca)
    except (OSError, ssl.SSLError, AssertionError):
        return False
    return True
