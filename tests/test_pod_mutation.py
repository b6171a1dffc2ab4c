"""SPEC 14's pod mutation as a table (after vault-k8s's handler tests).

Each case is a real pod manifest; the returned JSONPatch is applied with
`jsonpatch` (RFC 6902, as the API server applies it) and the patched pod is
validated against the Kubernetes schema with `kubernetes-validate` (strict:
an unknown field is an error), so a patch that only looks right fails here.
"""

from __future__ import annotations

import copy
import json

import jsonpatch
import kubernetes_validate
import pytest

from injector.modes.pod_mutation import (
    BINARY,
    MAX_CONTAINERS,
    ImageCommand,
    Settings,
    applies,
    commands_needed,
    images_of,
    mutate,
)

SETTINGS = Settings(init_image="registry.example.com/stronghold-init:0.1.0")
K8S = kubernetes_validate.latest_version()


def pod(
    *containers: dict, annotations: dict | None = None, labels: dict | None = None, init: list | None = None
) -> dict:
    metadata: dict = {
        "name": "shop",
        "namespace": "shop",
        "labels": {"stronghold.dev/inject": "true", **(labels or {})},
    }
    if annotations is not None:
        metadata["annotations"] = annotations
    spec: dict = {"containers": list(containers)}
    if init is not None:
        spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def app(name: str = "app", command: list | None = None, args: list | None = None, **env: str) -> dict:
    container: dict = {"name": name, "image": f"registry.example.com/{name}:1"}
    if command is not None:
        container["command"] = command
    if args is not None:
        container["args"] = args
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return container


REF = {"STRIPE_KEY": "stronghold://stripe/live?ttl=15m"}
FILE_REF = {"DB_PASSWORD_FILE": "stronghold://postgres/app"}


def request(obj: dict, operation: str = "CREATE") -> dict:
    return {"uid": "u-1", "operation": operation, "object": obj}


def patched(original: dict, commands: dict | None = None) -> tuple[dict, list[str]]:
    decision = mutate(original, SETTINGS, commands)
    assert decision.allowed, decision.message
    result = jsonpatch.apply_patch(copy.deepcopy(original), decision.patch)
    kubernetes_validate.validate(result, K8S, strict=True)
    assert result["metadata"]["annotations"]["stronghold.dev/status"] == "injected"
    return result, decision.warnings


def container(result: dict, name: str, key: str = "containers") -> dict:
    return next(c for c in result["spec"].get(key, []) if c["name"] == name)


@pytest.mark.parametrize(
    ("case", "req", "why"),
    [
        ("unlabelled", request({**pod(app(**REF)), "metadata": {"name": "x"}}), "not labelled"),
        ("label false", request(pod(app(**REF), labels={"stronghold.dev/inject": "false"})), "not labelled"),
        ("already injected", request(pod(app(**REF), annotations={"stronghold.dev/status": "injected"})), "already"),
        ("UPDATE", request(pod(app(**REF)), "UPDATE"), "not a CREATE"),
        ("DELETE, no object", {"uid": "u", "operation": "DELETE", "object": None}, "not a CREATE"),
    ],
)
def test_pods_that_are_not_ours_are_left_alone(case: str, req: dict, why: str) -> None:
    reason = applies(req)
    assert reason is not None and why in reason, case


def test_an_opted_in_create_applies() -> None:
    assert applies(request(pod(app(**REF)))) is None


def test_a_container_with_a_command_is_wrapped_with_its_command_kept_as_args() -> None:
    original = pod(app(command=["node", "server.js"], args=["--port", "8080"], **REF))
    result, warnings = patched(original)
    wrapped = container(result, "app")
    assert wrapped["command"] == [BINARY, "--"]
    assert wrapped["args"] == ["node", "server.js", "--port", "8080"]
    assert {"name": "stronghold-bin", "mountPath": "/stronghold/bin", "readOnly": True} in wrapped["volumeMounts"]
    assert {"name": "stronghold-run", "mountPath": "/run/stronghold"} in wrapped["volumeMounts"]
    assert {"name": "STRONGHOLD_DIR", "value": "/run/stronghold/tokens/app"} in wrapped["env"]
    assert wrapped["env"][0] == {"name": "STRIPE_KEY", "value": REF["STRIPE_KEY"]}  # the reference is untouched
    install = result["spec"]["initContainers"][0]
    assert install["name"] == "stronghold-install" and install["image"] == SETTINGS.init_image
    assert install["command"][-2:] == ["install", "/stronghold/bin"]
    volumes = {v["name"]: v for v in result["spec"]["volumes"]}
    assert volumes["stronghold-bin"]["emptyDir"]["medium"] == "Memory"
    assert volumes["stronghold-run"]["emptyDir"]["medium"] == "Memory"
    assert warnings == []


def test_several_containers_only_those_with_references_are_wrapped_and_the_rest_named_in_a_warning() -> None:
    original = pod(
        app("web", command=["nginx"]),
        app("api", command=["node", "api.js"], **REF),
        app("worker", command=["python", "w.py"], **FILE_REF),
        init=[app("migrate", command=["migrate"])],
    )
    original["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    original["metadata"]["annotations"] = {"team": "shop"}
    result, warnings = patched(original)
    assert container(result, "web")["command"] == ["nginx"]
    assert container(result, "api")["args"] == ["node", "api.js"]
    assert container(result, "worker")["args"] == ["python", "w.py"]
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["stronghold-install", "migrate"]
    assert [v["name"] for v in result["spec"]["volumes"]] == ["data", "stronghold-bin", "stronghold-run"]
    assert result["metadata"]["annotations"]["team"] == "shop"
    assert len(warnings) == 1 and "web" in warnings[0]


def test_the_containers_annotation_chooses_and_an_unknown_name_is_refused() -> None:
    original = pod(app("web", command=["nginx"]), app("api", command=["node"], **REF),
                   annotations={"stronghold.dev/containers": "web"})  # fmt: skip
    result, _ = patched(original)
    assert container(result, "web")["command"] == [BINARY, "--"]
    assert container(result, "api")["command"] == ["node"]
    original["metadata"]["annotations"]["stronghold.dev/containers"] = "web, nope"
    decision = mutate(original, SETTINGS)
    assert not decision.allowed and "nope" in decision.message


def test_settings_annotations_become_variables_and_the_containers_own_win() -> None:
    annotations = {
        "stronghold.dev/proxy-url": "https://stronghold.platform.svc:8443",
        "stronghold.dev/auth": "kubernetes",
        "stronghold.dev/role": "shop",
    }
    original = pod(app("a", command=["a"], **REF), app("b", command=["b"], STRONGHOLD_ROLE="own", **REF),
                   annotations=annotations)  # fmt: skip
    result, warnings = patched(original)
    env_a = {e["name"]: e["value"] for e in container(result, "a")["env"]}
    assert env_a["STRONGHOLD_PROXY_URL"] == "https://stronghold.platform.svc:8443"
    assert env_a["STRONGHOLD_AUTH"] == "kubernetes" and env_a["STRONGHOLD_ROLE"] == "shop"
    roles = [e["value"] for e in container(result, "b")["env"] if e["name"] == "STRONGHOLD_ROLE"]
    assert roles == ["own"]
    assert any("STRONGHOLD_ROLE" in w and "b" in w for w in warnings)


def test_no_command_takes_the_annotation_as_entrypoint_and_cmd() -> None:
    original = pod(app(**REF), annotations={"stronghold.dev/command.app": '["node", "server.js"]'})
    assert commands_needed(original) == []
    result, _ = patched(original)
    assert container(result, "app")["args"] == ["node", "server.js"]
    with_args = pod(app(args=["--verbose"], **REF), annotations={"stronghold.dev/command.app": '["node"]'})
    result, _ = patched(with_args)
    assert container(result, "app")["args"] == ["node", "--verbose"]  # args replace CMD, as Kubernetes does


@pytest.mark.parametrize("bad", ["node server.js", "[]", "[1, 2]", '{"a": 1}'])
def test_a_bad_command_annotation_is_refused_saying_what_it_must_be(bad: str) -> None:
    decision = mutate(pod(app(**REF), annotations={"stronghold.dev/command.app": bad}), SETTINGS)
    assert not decision.allowed and "JSON array of strings" in decision.message


def test_no_command_and_no_annotation_uses_the_image_config_and_says_so() -> None:
    original = pod(app(**REF), app("side", args=["--fast"], **REF))
    assert commands_needed(original) == ["registry.example.com/app:1", "registry.example.com/side:1"]
    commands = {
        "registry.example.com/app:1": ImageCommand(("/entry.sh",), ("serve",), "sha256:" + "a" * 64),
        "registry.example.com/side:1": ImageCommand(("/side",), ("--slow",), "sha256:" + "b" * 64),
    }
    result, warnings = patched(original, commands)
    assert container(result, "app")["args"] == ["/entry.sh", "serve"]
    assert container(result, "side")["args"] == ["/side", "--fast"]
    assert any("registry" in w and "sha256:" + "a" * 64 in w for w in warnings)


@pytest.mark.parametrize(
    "found", [None, "the registry answered 404", ImageCommand((), (), "sha256:" + "c" * 64)], ids=str
)
def test_no_command_that_cannot_be_had_is_refused_saying_what_to_set(found: object) -> None:
    commands = {} if found is None else {"registry.example.com/app:1": found}
    decision = mutate(pod(app(**REF)), SETTINGS, commands)  # type: ignore[arg-type]
    assert not decision.allowed
    assert "set its command" in decision.message and "stronghold.dev/command.app" in decision.message
    assert decision.patch == []


def test_sidecar_mode_adds_a_native_sidecar_and_points_the_app_at_its_files() -> None:
    original = pod(app(command=["node"], DB_PASSWORD_FILE=FILE_REF["DB_PASSWORD_FILE"], PLAIN="x"),
                   app("other", command=["sh"]), annotations={"stronghold.dev/mode": "sidecar",
                                                              "stronghold.dev/auth": "kubernetes"})  # fmt: skip
    result, _ = patched(original)
    install, sidecar = result["spec"]["initContainers"]
    assert install["name"] == "stronghold-install"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["command"] == [BINARY, "sidecar"]
    assert "/run/stronghold/tokens" in sidecar["startupProbe"]["exec"]["command"]
    env = {e["name"]: e["value"] for e in sidecar["env"]}
    assert env["DB_PASSWORD_FILE"] == FILE_REF["DB_PASSWORD_FILE"] and env["STRONGHOLD_AUTH"] == "kubernetes"
    app_env = {e["name"]: e["value"] for e in container(result, "app")["env"]}
    assert app_env == {"DB_PASSWORD_FILE": "/run/stronghold/tokens/DB_PASSWORD", "PLAIN": "x"}
    assert container(result, "app")["command"] == ["node"]  # not wrapped
    for name in ("app", "other"):
        assert {"name": "stronghold-run", "mountPath": "/run/stronghold", "readOnly": True} in container(result, name)[
            "volumeMounts"
        ]


def test_fetch_mode_adds_a_one_shot_init_container() -> None:
    original = pod(app(command=["report"], **FILE_REF), annotations={"stronghold.dev/mode": "fetch"})
    result, _ = patched(original)
    fetch = container(result, "stronghold-fetch", "initContainers")
    assert fetch["command"] == [BINARY, "fetch"] and "restartPolicy" not in fetch


def test_sidecar_mode_refuses_an_environment_reference() -> None:
    decision = mutate(pod(app(command=["x"], **REF), annotations={"stronghold.dev/mode": "sidecar"}), SETTINGS)
    assert not decision.allowed and "STRIPE_KEY_FILE" in decision.message


@pytest.mark.parametrize(
    ("original", "said"),
    [
        (pod(app(command=["x"], **REF), annotations={"stronghold.dev/mode": "daemon"}), "daemon"),
        (pod(app(command=["x"], **REF), init=[app("stronghold-install")]), "rename"),
        (pod(), "no containers"),
        (pod(*[app(f"c{i}", command=["x"], **REF) for i in range(MAX_CONTAINERS + 1)]), "at most"),
    ],
)
def test_pods_that_cannot_be_injected_are_refused_with_a_reason(original: dict, said: str) -> None:
    decision = mutate(original, SETTINGS)
    assert not decision.allowed and said in decision.message


def test_a_pod_with_no_reference_is_admitted_unchanged_with_a_warning() -> None:
    decision = mutate(pod(app(command=["nginx"])), SETTINGS)
    assert decision.allowed and decision.patch == [] and decision.warnings


def test_mutating_twice_is_not_possible_because_the_result_is_marked() -> None:
    result, _ = patched(pod(app(command=["node"], **REF)))
    assert applies(request(result)) == "already injected"


def test_images_of_lists_every_image_once() -> None:
    original = pod(app("a"), app("b"), init=[app("a")])
    assert images_of(original) == ["registry.example.com/a:1", "registry.example.com/b:1"]


def test_the_patch_never_holds_a_reference_value_it_was_not_given() -> None:
    """The patch copies references only into the sidecar; the wrapped pod's values stay where they were."""
    original = pod(app(command=["node"], **REF))
    decision = mutate(original, SETTINGS)
    assert REF["STRIPE_KEY"] not in json.dumps(decision.patch)


def test_the_mutation_is_pure_and_the_registry_client_stays_in_the_audit_and_the_webhook() -> None:
    """pod_mutation imports nothing that does I/O; audit/registry.py is imported by the audit and the webhook only."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "injector"
    tree = ast.parse((package / "modes" / "pod_mutation.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "json", "collections.abc", "dataclasses"}, imported
    for path in package.rglob("*.py"):
        text = path.read_text()
        relative = path.relative_to(package).as_posix()
        if "injector.audit.registry" in text:
            assert relative.startswith("audit/") or relative == "modes/webhook_images.py", relative
        if "injector.modes.webhook" in text:
            assert relative in ("cli.py", "modes/webhook.py"), relative


def test_names_with_slash_and_tilde_never_reach_a_patch_path() -> None:
    """JSON pointers (RFC 6901) need `/` and `~` escaped: the patch addresses containers by index and
    escapes the one key it writes, so names the API server validates only after us cannot break it."""
    original = pod(
        app("a/b", **REF),
        app("c~1d", command=["x"], **REF),
        annotations={"stronghold.dev/command.a/b": '["run"]', "x~/y": "kept"},
    )
    decision = mutate(original, SETTINGS)
    assert decision.allowed, decision.message
    result = jsonpatch.apply_patch(copy.deepcopy(original), decision.patch)
    assert container(result, "a/b")["args"] == ["run"] and container(result, "c~1d")["args"] == ["x"]
    assert result["metadata"]["annotations"] == {
        **original["metadata"]["annotations"],
        "stronghold.dev/status": "injected",
    }


@pytest.mark.parametrize("name", ["stronghold-bin", "stronghold-run"])
def test_a_pod_that_already_has_a_volume_by_our_names_is_refused(name: str) -> None:
    original = pod(app(command=["x"], **REF))
    original["spec"]["volumes"] = [{"name": name, "emptyDir": {}}]
    decision = mutate(original, SETTINGS)
    assert not decision.allowed and "rename" in decision.message and decision.patch == []
