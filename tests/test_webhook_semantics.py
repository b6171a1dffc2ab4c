"""What the webhook's patch makes a container run, run for real with the binary and a test proxy.

The patched pod's containers are replayed on this machine: the wrapped
container's command and args (with /stronghold/bin/stronghold-init as the
binary under test and /run/stronghold mapped onto a tmpfs directory whose root
is 0777, as an emptyDir's is), and in sidecar mode the helper's own
environment through `fetch`, then the app's rewritten `_FILE` paths read back.
tests/test_webhook_kube_play.py runs the same in real containers.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonpatch

from conftest import TestProxy, base_env, run
from injector.modes.pod_mutation import BINARY, RUN_DIR, Settings, mutate

SETTINGS = Settings(init_image="registry.example.com/stronghold-init:0.1.0")


def _pod(annotations: dict, *containers: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"stronghold.dev/inject": "true"}, "annotations": annotations},
        "spec": {"containers": list(containers)},
    }


def _patched(pod: dict) -> dict:
    decision = mutate(pod, SETTINGS)
    assert decision.allowed, decision.message
    return jsonpatch.apply_patch(copy.deepcopy(pod), decision.patch)


def _env(container: dict, mount: Path) -> dict[str, str]:
    return {e["name"]: e["value"].replace(RUN_DIR, str(mount), 1) for e in container.get("env", [])}


def test_a_wrapped_container_runs_its_own_command_with_its_token(proxy: TestProxy, shm_dir: Path) -> None:
    proxy.secrets["shop/api"] = "tok_wrapped_TESTVALUE"
    app = {
        "name": "app",
        "image": "x",
        "command": ["sh", "-c"],
        "args": ['printf "%s|%s" "$API_TOKEN" "$(cat "$DB_FILE")"'],
        "env": [
            {"name": "API_TOKEN", "value": "stronghold://shop/api"},
            {"name": "DB_FILE", "value": "stronghold://shop/api"},
        ],
    }
    result = _patched(_pod({"stronghold.dev/proxy-url": proxy.url}, app))
    wrapped = result["spec"]["containers"][0]
    assert wrapped["command"] == [BINARY, "--"]
    shm_dir.mkdir(mode=0o777)
    shm_dir.chmod(0o777)
    env = {**base_env(proxy), **_env(wrapped, shm_dir)}
    assert env["STRONGHOLD_PROXY_URL"] == proxy.url  # from the annotation
    done = run([*wrapped["command"][1:], *wrapped["args"]], env)
    assert done.code == 0, done.stderr
    token, _, from_file = done.stdout.partition("|")
    assert token in proxy.issued_values and from_file in proxy.issued_values


def test_sidecar_mode_the_helper_writes_what_the_app_is_told_to_read(proxy: TestProxy, shm_dir: Path) -> None:
    proxy.secrets["shop/db"] = "pg_sidecar_TESTVALUE"
    app = {
        "name": "app",
        "image": "x",
        "command": ["node"],
        "env": [{"name": "DB_PASSWORD_FILE", "value": "stronghold://shop/db"}, {"name": "PLAIN", "value": "x"}],
    }
    result = _patched(_pod({"stronghold.dev/mode": "sidecar"}, app))
    helper = result["spec"]["initContainers"][1]
    shm_dir.mkdir()
    shm_dir.chmod(0o777)  # the emptyDir's root
    helper_env = _env(helper, shm_dir)
    probe = helper["startupProbe"]["exec"]["command"]
    ready = [*probe[1:-1], probe[-1].replace(RUN_DIR, str(shm_dir), 1)]
    assert run(ready, base_env()).code == 1  # the app would still wait
    env = {**base_env(proxy), **{k: v for k, v in helper_env.items() if k != "STRONGHOLD_DIR"}}
    done = run(["fetch", "--dir", helper_env["STRONGHOLD_DIR"]], env)  # `fetch` writes as the sidecar does at start
    assert done.code == 0, done.stderr
    assert run(ready, base_env()).code == 0  # now the startup probe passes
    app_env = _env(result["spec"]["containers"][0], shm_dir)
    assert Path(app_env["DB_PASSWORD_FILE"]).read_text() in proxy.issued_values
    assert helper["command"] == [BINARY, "sidecar"]
