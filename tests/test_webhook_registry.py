"""The webhook's image config and `--audit` against Debian's real docker-registry on loopback.

A clean image (CMD node server.js) and a dirty one (testkit/audit_images.py)
are pushed with `skopeo copy`; a pod whose container has no `command` gets the
image's CMD as args, read by digest.  `--audit enforce` refuses the dirty image
naming it and its number of findings (never a value), `warn` admits it with a
warning.  A registry that accepts connections and never answers shows the
per-review budget: the answer comes within it, `warn` admits, `enforce` refuses.
A tag pushed again to another image is seen at the next review (cached by
digest, never by tag).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import jsonpatch
import kubernetes_validate
import pytest
from test_audit import assert_no_value
from test_audit_registry import Registry

from conftest import STRONGHOLD
from testkit.audit_builder import all_forms
from testkit.audit_images import ALL_SECRETS, CLEAN, DIRTY
from testkit.webhook import WebhookProcess, post, review, write_certificate

pytestmark = pytest.mark.skipif(
    not (shutil.which("docker-registry") and shutil.which("skopeo")), reason="needs docker-registry and skopeo"
)
trustme = pytest.importorskip("trustme")
APP = dataclasses.replace(CLEAN, cmd=["node", "server.js"])


def push(archive: str, destination: str) -> str:
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", archive, destination],
                   check=True, timeout=900, capture_output=True)  # fmt: skip
    return subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", destination],
        check=True, timeout=900, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("webhook-registry")
    server = Registry(root, "plain", auth=False, tls=None)
    clean = all_forms(APP, root / "clean")["docker-archive"]
    dirty = all_forms(DIRTY, root / "dirty")["docker-archive"]
    address = server.address
    digests = {
        "clean": push(clean, f"docker://{address}/app/clean:1"),
        "dirty": push(dirty, f"docker://{address}/app/dirty:1"),
    }
    yield {"address": address, "digests": digests, "archives": {"clean": clean, "dirty": dirty}}
    server.stop()


@pytest.fixture(scope="module")
def ca() -> object:
    return trustme.CA()


@pytest.fixture
def start(ca: object, tmp_path: Path) -> Iterator:
    started: list[WebhookProcess] = []

    def factory(*extra: str) -> WebhookProcess:
        cert, key = write_certificate(ca, tmp_path)
        process = WebhookProcess(str(STRONGHOLD), cert, key, *extra)
        started.append(process)
        return process

    yield factory
    for process in started:
        process.stop()


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A registry address that accepts connections (the kernel's backlog) and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def shop(image: str, command: list[str] | None = None) -> dict:
    container: dict = {"name": "api", "image": image, "env": [{"name": "TOKEN", "value": "stronghold://shop/api"}]}
    if command:
        container["command"] = command
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "shop", "labels": {"stronghold.dev/inject": "true"}},
        "spec": {"containers": [container]},
    }


def ask(webhook: WebhookProcess, ca: object, pod: dict) -> tuple[dict, bytes]:
    document = review(pod)
    status, body = post(webhook.client(ca.cert_pem.bytes()), document)  # type: ignore[attr-defined]
    assert status == 200, body
    response = json.loads(body)["response"]
    assert response["uid"] == document["request"]["uid"]
    return response, body


def patched(pod: dict, response: dict) -> dict:
    result = jsonpatch.apply_patch(copy.deepcopy(pod), json.loads(base64.b64decode(response["patch"])))
    kubernetes_validate.validate(result, kubernetes_validate.latest_version(), strict=True)
    return result


def test_no_command_takes_cmd_from_the_image_config_by_digest(registry: dict, start, ca: object) -> None:
    webhook = start()
    for image in (
        f"{registry['address']}/app/clean:1",
        f"{registry['address']}/app/clean@{registry['digests']['clean']}",
    ):
        pod = shop(image)
        response, _ = ask(webhook, ca, pod)
        assert response["allowed"] is True, response
        assert patched(pod, response)["spec"]["containers"][0]["args"] == ["node", "server.js"]
        assert any("registry" in w and registry["digests"]["clean"] in w for w in response["warnings"])


def test_a_missing_image_is_refused_saying_what_to_set(registry: dict, start, ca: object) -> None:
    response, _ = ask(start(), ca, shop(f"{registry['address']}/app/nothing:1"))
    assert response["allowed"] is False
    assert "no app/nothing:1" in response["status"]["message"]
    assert "stronghold.dev/command.api" in response["status"]["message"]


def test_a_tag_pushed_again_is_seen_at_the_next_review(registry: dict, start, ca: object, tmp_path: Path) -> None:
    webhook = start()
    moving = f"{registry['address']}/app/moving:1"
    push(registry["archives"]["clean"], f"docker://{moving}")
    assert patched(shop(moving), ask(webhook, ca, shop(moving))[0])["spec"]["containers"][0]["args"] == [
        "node",
        "server.js",
    ]
    push(registry["archives"]["dirty"], f"docker://{moving}")  # DIRTY's CMD is /bin/sh
    assert patched(shop(moving), ask(webhook, ca, shop(moving))[0])["spec"]["containers"][0]["args"] == ["/bin/sh"]


def test_audit_enforce_refuses_a_dirty_image_naming_it_and_its_findings(registry: dict, start, ca: object) -> None:
    webhook = start("--audit", "enforce", "--registry-budget", "60")
    dirty = f"{registry['address']}/app/dirty:1"
    response, body = ask(webhook, ca, shop(dirty, ["/app/run"]))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert dirty in message and "6 finding(s)" in message and "enforce" in message
    clean, _ = ask(webhook, ca, shop(f"{registry['address']}/app/clean:1", ["/app/run"]))
    assert clean["allowed"] is True and not any("finding" in w for w in clean.get("warnings", []))
    webhook.stop()
    logged = "".join(webhook.lines)
    for value in ALL_SECRETS:
        assert value not in body.decode() and value not in logged and json.dumps(value)[1:-1] not in logged
    assert_no_value(subprocess.CompletedProcess([], 0, body.decode(), logged))


def test_audit_warn_admits_a_dirty_image_with_a_warning(registry: dict, start, ca: object) -> None:
    webhook = start("--audit", "warn", "--registry-budget", "60")
    response, _ = ask(webhook, ca, shop(f"{registry['address']}/app/dirty:1", ["/app/run"]))
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    assert any("6 finding(s)" in w for w in response["warnings"])


@pytest.mark.parametrize("mode", ["warn", "enforce"])
def test_a_registry_that_never_answers_costs_one_budget(blackhole: str, start, ca: object, mode: str) -> None:
    webhook = start("--audit", mode, "--registry-budget", "1")
    began = time.monotonic()
    response, _ = ask(webhook, ca, shop(f"{blackhole}/app/slow:1", ["/app/run"]))
    took = time.monotonic() - began
    assert took < 8, took  # the budget (1 s) and a loaded machine's slack, far below the registry's own timeouts
    if mode == "warn":
        assert response["allowed"] is True and any("not audited within 1s" in w for w in response["warnings"])
    else:
        assert response["allowed"] is False and "not audited within 1s" in response["status"]["message"]
    # a pod with no command there cannot be admitted at all: the command is never guessed
    response, _ = ask(webhook, ca, shop(f"{blackhole}/app/slow:1"))
    assert response["allowed"] is False and "budget" in response["status"]["message"]


def test_a_registry_that_never_answers_holds_none_of_the_lookups_for_other_registries(
    blackhole: str, start, ca: object
) -> None:
    """Five images at a registry that never answers (each lookup would hold a thread for minutes)
    must not leave a lookup at another registry waiting past the budget behind them."""
    webhook = start("--registry-budget", "4")
    pod = shop(f"{blackhole}/app/slow0:1")
    template = pod["spec"]["containers"][0]
    pod["spec"]["containers"] = [{**template, "name": f"c{i}", "image": f"{blackhole}/app/slow{i}:1"} for i in range(5)]
    response, _ = ask(webhook, ca, pod)
    assert response["allowed"] is False
    # nothing listens on port 1: an answer of its own ("unreachable") within the budget, not a wait in a queue
    response, _ = ask(webhook, ca, shop("127.0.0.1:1/app/other:1"))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert "unreachable" in message and "budget" not in message, message


class DrippingMirror:
    """A registry on loopback that relays the real one's manifests and configs but drips every layer
    blob a byte a second, for ever: a hostile registry an opted-in pod can name."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading
        import urllib.request

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _relay(self, head: bool) -> None:
                request = urllib.request.Request(f"http://{upstream}{self.path}", method="HEAD" if head else "GET")
                request.add_header("Accept", self.headers.get("Accept", "*/*"))
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        body, status, headers = answer.read(), answer.status, answer.headers
                except urllib.error.HTTPError as error:
                    body, status, headers = error.read(), error.code, error.headers
                self.send_response(status)
                for name in ("Content-Type", "Docker-Content-Digest"):
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("Content-Length", headers.get("Content-Length") or str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                self._relay(head=True)

            def do_GET(self) -> None:
                if "/blobs/" in self.path and not mirror.config_read:
                    mirror.config_read = True  # the first blob is the image config: relayed whole
                    self._relay(head=False)
                    return
                if "/blobs/" not in self.path:
                    self._relay(head=False)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(10**9))
                self.end_headers()
                while not mirror.stopping.wait(1.0):  # the drip's pace, not a synchronisation
                    try:
                        self.wfile.write(b"\x1f")
                        self.wfile.flush()
                    except OSError:
                        return

        mirror = self
        self.config_read = False
        self.stopping = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def test_an_audit_stuck_on_a_dripping_layer_does_not_hold_up_another_images_audit(
    registry: dict, start, ca: object
) -> None:
    mirror = DrippingMirror(registry["address"])
    try:
        webhook = start("--audit", "enforce", "--registry-budget", "4")
        response, _ = ask(webhook, ca, shop(f"{mirror.address}/app/dirty:1", ["/app/run"]))
        assert response["allowed"] is False and "not audited within 4s" in response["status"]["message"]
        assert mirror.config_read  # its audit is under way, reading the dripping layer
        clean, _ = ask(webhook, ca, shop(f"{registry['address']}/app/clean:1", ["/app/run"]))
        assert clean["allowed"] is True, clean
    finally:
        mirror.stop()


def test_a_budget_past_the_request_deadline_is_waited_out_not_cut_off(blackhole: str, start, ca: object) -> None:
    """The reaper's 10 s deadline is for slow clients: a review waiting on a registry for a longer
    --registry-budget is answered at the budget (it was cut off at 10 s, the connection shut down)."""
    from injector.modes.webhook import REQUEST_SECONDS

    budget = REQUEST_SECONDS + 2
    webhook = start("--registry-budget", f"{budget:g}")
    began = time.monotonic()
    response, _ = ask(webhook, ca, shop(f"{blackhole}/app/slow:1"))
    assert response["allowed"] is False and f"{budget:g}s budget" in response["status"]["message"]
    assert time.monotonic() - began >= budget
