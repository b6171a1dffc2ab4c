"""The webhook's mutated pod run for real with `podman kube play` (init containers, shared emptyDirs).

No API server here, so the test plays its part: the pod manifest goes to the
real webhook over TLS, the JSONPatch is applied with `jsonpatch`, and podman
runs the result as a kubelet would: the `stronghold-install` init container
(the bundle's image, examples/sidecar.Dockerfile) copies the Python-free
bundle into the `stronghold-bin` emptyDir, then the unmodified app image
(Debian without Python, never rebuilt for stronghold-init) runs
/stronghold/bin/stronghold-init -- <its command>, which logs in to the dev
proxy on loopback and hands the app its token.  The app prints it and runs
until the pod is stopped (what `podman kube down` does first): the SIGTERM
reaches stronghold-init as PID 1, which forwards it, and the container ends
with the app's own exit code.

What podman does differently from a kubelet, and how the test meets it:
- its emptyDir is a directory on disk even with `medium: Memory`, so the pod
  sets STRONGHOLD_DIR to /dev/shm (tmpfs) itself; the webhook keeps a
  container's own STRONGHOLD_DIR;
- no pod network here (containers.conf has netns none), so the pod uses
  hostNetwork to reach the dev proxy on 127.0.0.1;
- images come from the test's storage (imagePullPolicy: Never for the app's
  `latest` tag);
- native sidecars (restartPolicy: Always on an init container) are not run as
  a kubelet runs them, so this runs the default wrap mode;
- an init container is removed once it has run (no `podman logs` of it
  afterwards): the app finding /stronghold/bin/stronghold-init is the proof
  that it installed.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from pathlib import Path

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from conftest import STRONGHOLD, read_line, start, wait_for
from testkit import containers
from testkit.webhook import WebhookProcess, post, review, write_certificate

pytestmark = pytest.mark.container
trustme = pytest.importorskip("trustme")
REPO = Path(__file__).resolve().parent.parent
TOKEN = "tok_kubeplay_TESTVALUE_41"


def test_a_mutated_pod_runs_for_real_and_the_app_gets_its_token(container_env, tmp_path: Path, processes) -> None:
    env = container_env
    init_image = containers.build_sidecar_image(env, REPO)
    app_image = env.base("debian-nopy")
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"demo/api={TOKEN}\n")
    bootstrap = "boot-kubeplay-TESTTOKEN-5512"
    (tmp_path / "boot").write_text(bootstrap)
    proxy = start(
        ["dev-proxy", "--secrets", str(secrets), "--listen", "127.0.0.1:0", "--token-file", str(tmp_path / "boot")],
        env=dict(os.environ),
    )
    processes.append(proxy)
    proxy_url = read_line(proxy, timeout=60).strip()
    assert proxy_url.startswith("http://127.0.0.1:"), proxy_url

    ca = trustme.CA()
    cert, key = write_certificate(ca, tmp_path)
    webhook = WebhookProcess(str(STRONGHOLD), cert, key, init_image=init_image)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "shop",
            "labels": {"stronghold.dev/inject": "true"},
            "annotations": {"stronghold.dev/proxy-url": proxy_url},
        },
        "spec": {
            "restartPolicy": "Never",
            "hostNetwork": True,
            "containers": [
                {
                    "name": "app",
                    "image": app_image,
                    "imagePullPolicy": "Never",
                    # prints its token, then runs until stopped and ends with its own code, 7
                    "command": [
                        "sh",
                        "-c",
                        'trap "exit 7" TERM; echo "token=$(cat "$API_TOKEN_FILE")"; while :; do sleep 1; done',
                    ],
                    "env": [
                        {"name": "API_TOKEN_FILE", "value": "stronghold://demo/api"},
                        {"name": "STRONGHOLD_DIR", "value": "/dev/shm/stronghold"},  # podman's emptyDir is on disk
                        {"name": "STRONGHOLD_BOOTSTRAP_TOKEN", "value": bootstrap},
                    ],
                }
            ],
        },
    }
    try:
        status, body = post(webhook.client(ca.cert_pem.bytes()), review(pod))
    finally:
        assert webhook.stop() == 0
    assert status == 200, body
    response = json.loads(body)["response"]
    assert response["allowed"] is True, response
    mutated = jsonpatch.apply_patch(copy.deepcopy(pod), json.loads(base64.b64decode(response["patch"])))
    kubernetes_validate.validate(mutated, kubernetes_validate.latest_version(), strict=True)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(mutated))

    env.podman("kube", "play", str(manifest), timeout=600)
    try:
        wait_for(lambda: f"token={TOKEN}" in _logs(env), timeout=300, interval=0.5, what="the app's token")
        # what `podman kube down` does first: SIGTERM to each container's PID 1, here stronghold-init,
        # which forwards it to the app and exits with the app's code
        env.podman("pod", "stop", "--time", "60", "shop", timeout=300)
        assert env.exit_code("shop-app") == 7, _logs(env)
        assert bootstrap not in _logs(env)
    finally:
        env.podman("kube", "down", str(manifest), check=False, timeout=300)
    assert env.podman("pod", "exists", "shop", check=False).returncode != 0


def _logs(env: containers.ContainerEnv) -> str:
    done = env.podman("logs", "shop-app", check=False)
    return done.stdout + done.stderr
