"""examples/kubernetes/ and examples/compose.yaml: the patterns are right, and they work.

Each file is parsed (PyYAML, test-only) and checked for the pattern's
essentials. Then the sidecar's own environment, pointed at a test proxy (compose)
or a real OpenBao (the Kubernetes examples) and a tmpfs directory, is run through
the real `stronghold-init fetch`: every file the app is told to read must appear,
holding an issued token.  The Kubernetes examples log in to OpenBao's kubernetes
auth method, which needs an API server's TokenReview; here the same login body
({role, jwt}) goes to a JWT auth mount that checks a projected-token-shaped JWT
signed by a key of the test's (tests/test_kubernetes_manifests.py validates the
files against the Kubernetes schema).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import TestProxy, base_env, run
from injector.settings.references import collect_references

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> dict:
    """The file's one document, or the workload (Deployment, Job) among its documents."""
    documents = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    if len(documents) == 1:
        return documents[0]
    (workload,) = [d for d in documents if d["kind"] in ("Deployment", "Job")]
    return workload


def pod_spec(document: dict) -> dict:
    return document["spec"]["template"]["spec"]


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def memory_volume(spec: dict) -> str:
    volumes = [v for v in spec["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
    assert len(volumes) == 1, "one emptyDir with medium: Memory"
    return volumes[0]["name"]


def mount_path(container: dict, volume: str) -> tuple[str, bool]:
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume)
    return mount["mountPath"], bool(mount.get("readOnly"))


def check_bootstrap_is_projected_token(spec: dict, sidecar: dict) -> None:
    projected = next(v for v in spec["volumes"] if "projected" in v)
    sources = projected["projected"]["sources"]
    assert any("serviceAccountToken" in s and s["serviceAccountToken"].get("audience") for s in sources)
    env = env_of(sidecar)
    assert env["STRONGHOLD_VAULT_AUTH"] == "jwt" and env["STRONGHOLD_VAULT_AUTH_MOUNT"] == "kubernetes"
    assert env["STRONGHOLD_VAULT_ROLE"]
    token_dir, read_only = mount_path(sidecar, projected["name"])
    assert read_only and env["STRONGHOLD_VAULT_JWT_FILE"].startswith(token_dir + "/")
    ca_dir, read_only = mount_path(sidecar, "openbao-ca")
    assert read_only and env["STRONGHOLD_CA_BUNDLE"].startswith(ca_dir + "/")
    assert env["STRONGHOLD_VAULT_ADDR"].startswith("https://")


def fetch_from_openbao(bao, sidecar_env: dict[str, str], mount: str, shm_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Run `fetch` with the example's login and references against a real OpenBao (see the docstring).

    -> the values stored, by the variable that asks for them."""
    import time
    import uuid

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from test_openbao import make_jwt

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    auth_mount = "kubernetes-" + uuid.uuid4().hex[:8]
    role = sidecar_env["STRONGHOLD_VAULT_ROLE"]
    bao.ok("POST", f"sys/auth/{auth_mount}", {"type": "jwt"})
    bao.ok("POST", f"auth/{auth_mount}/config", {"jwt_validation_pubkeys": [public.decode()]})
    references = {k: v for k, v in sidecar_env.items() if v.startswith("vault://")}
    rules = "".join(
        f'path "{v.removeprefix("vault://").split("#")[0]}" {{ capabilities = ["read"] }}\n'
        for v in references.values()
    )
    bao.ok("PUT", f"sys/policies/acl/{role}", {"policy": rules})
    bao.ok("POST", f"auth/{auth_mount}/role/{role}", {
        "role_type": "jwt", "user_claim": "sub", "bound_audiences": ["stronghold"], "token_policies": [role],
        "bound_subject": f"system:serviceaccount:shop:{role}",
    })  # fmt: skip
    stored: dict[str, str] = {}
    for name, reference in references.items():
        path, field = reference.removeprefix("vault://").split("#")
        stored[name] = f"example-{uuid.uuid4().hex}"
        bao.ok("POST", path, {"data": {field: stored[name]}})
    now = int(time.time())
    jwt = tmp_path / "token"
    claims = {"sub": f"system:serviceaccount:shop:{role}", "aud": "stronghold", "iat": now, "exp": now + 600}
    jwt.write_text(make_jwt(key, claims))
    env = base_env(None, **references)
    env.update(STRONGHOLD_VAULT_ADDR=bao.url, STRONGHOLD_VAULT_AUTH=sidecar_env["STRONGHOLD_VAULT_AUTH"],
               STRONGHOLD_VAULT_ROLE=role, STRONGHOLD_VAULT_AUTH_MOUNT=auth_mount,
               STRONGHOLD_VAULT_JWT_FILE=str(jwt))  # fmt: skip
    shm_dir.mkdir()
    shm_dir.chmod(0o777)  # an emptyDir's root, as Kubernetes makes it
    directory = sidecar_env["STRONGHOLD_DIR"].replace(mount, str(shm_dir), 1)
    result = run(["fetch", "--dir", directory], env)
    assert result.code == 0, result.stderr
    return stored


def check_app_reads_what_openbao_holds(
    stored: dict[str, str], app_env: dict[str, str], mount: str, shm_dir: Path
) -> None:
    file_vars = {k: v for k, v in app_env.items() if k.endswith("_FILE")}
    assert file_vars and set(file_vars) == set(stored), "the app is told where each file is"
    for name, path in file_vars.items():
        assert Path(path.replace(mount, str(shm_dir), 1)).read_text() == stored[name], path


def fetch_as_the_sidecar(
    proxy: TestProxy, sidecar_env: dict[str, str], mount: str, shm_dir: Path, root_mode: int
) -> None:
    """Run `fetch` with the example's references and its mount mapped onto shm_dir.

    `root_mode` is the mount's own mode: 0777 for an emptyDir, as Kubernetes makes it.
    """
    env = base_env(proxy)
    for name, value in sidecar_env.items():
        if not name.startswith("STRONGHOLD_"):
            env[name] = value
    for reference in collect_references(env):
        proxy.secrets.setdefault(reference.secret, "example-value")
    shm_dir.mkdir()
    shm_dir.chmod(root_mode)
    directory = sidecar_env["STRONGHOLD_DIR"].replace(mount, str(shm_dir), 1)
    result = run(["fetch", "--dir", directory], env)
    assert result.code == 0, result.stderr


def check_app_reads_what_the_sidecar_writes(
    proxy: TestProxy, app_env: dict[str, str], mount: str, shm_dir: Path
) -> None:
    file_vars = {k: v for k, v in app_env.items() if k.endswith("_FILE")}
    assert file_vars, "the app is told where its files are"
    for path in file_vars.values():
        local = Path(path.replace(mount, str(shm_dir), 1))
        assert local.read_text() in proxy.issued_values, f"{path} holds an issued token"


def test_kubernetes_native_sidecar(bao, shm_dir, tmp_path: Path) -> None:
    spec = pod_spec(load("kubernetes/sidecar.yaml"))
    volume = memory_volume(spec)
    (sidecar,) = spec["initContainers"]
    assert sidecar["restartPolicy"] == "Always", "a native sidecar"
    assert sidecar["args"][0] == "sidecar"
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert "--health-listen" in sidecar["args"]
    check_bootstrap_is_projected_token(spec, sidecar)
    env = env_of(sidecar)
    references = collect_references(env)
    assert references and all(r.is_file for r in references), "a sidecar takes _FILE references only"
    mount, _ = mount_path(sidecar, volume)
    assert env["STRONGHOLD_DIR"] != mount, "a subdirectory: the emptyDir root itself is world-writable"
    (app,) = spec["containers"]
    app_mount, read_only = mount_path(app, volume)
    assert app_mount == mount and read_only
    stored = fetch_from_openbao(bao, env, mount, shm_dir, tmp_path)
    check_app_reads_what_openbao_holds(stored, env_of(app), mount, shm_dir)


def test_kubernetes_init_container_fetch(bao, shm_dir, tmp_path: Path) -> None:
    spec = pod_spec(load("kubernetes/init-fetch.yaml"))
    volume = memory_volume(spec)
    (init,) = spec["initContainers"]
    assert init["args"] == ["fetch"]
    assert "restartPolicy" not in init, "a plain init container that runs to completion"
    check_bootstrap_is_projected_token(spec, init)
    mount, _ = mount_path(init, volume)
    stored = fetch_from_openbao(bao, env_of(init), mount, shm_dir, tmp_path)
    (app,) = spec["containers"]
    check_app_reads_what_openbao_holds(stored, env_of(app), mount, shm_dir)


def test_compose_shares_a_tmpfs_volume(proxy: TestProxy, shm_dir) -> None:
    compose = load("compose.yaml")
    volume = compose["volumes"]["stronghold-tokens"]
    assert volume["driver_opts"]["type"] == "tmpfs"
    assert "mode=0700" in volume["driver_opts"]["o"]
    sidecar, app = compose["services"]["stronghold"], compose["services"]["app"]
    assert sidecar["command"][0] == "sidecar"
    assert sidecar["healthcheck"]["test"] == ["CMD", "test", "-f", "/run/stronghold/.ready"]
    assert app["depends_on"]["stronghold"]["condition"] == "service_healthy"
    assert "stronghold-tokens:/run/stronghold" in sidecar["volumes"]
    assert "stronghold-tokens:/run/stronghold:ro" in app["volumes"]
    assert sidecar["environment"]["STRONGHOLD_BOOTSTRAP_TOKEN_FILE"].startswith("/run/secrets/")
    assert "STRONGHOLD_BOOTSTRAP_TOKEN" not in sidecar["environment"]
    env = {k: str(v) for k, v in sidecar["environment"].items()}
    assert all(r.is_file for r in collect_references(env))
    # The compose volume is created 0700 by its mount options, so it is used as is.
    fetch_as_the_sidecar(proxy, env, "/run/stronghold", shm_dir, 0o700)
    app_env = {k: str(v) for k, v in app["environment"].items()}
    check_app_reads_what_the_sidecar_writes(proxy, app_env, "/run/stronghold", shm_dir)


@pytest.mark.parametrize(
    "name", ["kubernetes/sidecar.yaml", "kubernetes/init-fetch.yaml", "kubernetes/webhook.yaml", "compose.yaml"]
)
def test_no_secret_literal_in_examples(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    from test_dockerfile import SECRET_SHAPES

    assert not SECRET_SHAPES.search(text)
    assert "STRONGHOLD_BOOTSTRAP_TOKEN:" not in text and "name: STRONGHOLD_BOOTSTRAP_TOKEN}" not in text
