"""OpenBao / Vault references against a real OpenBao dev server (SPEC section 9).

vault://path#field (KV v2) into env and files, rotation of a changed value on
--vault-poll, minted vault-token:// tokens with exactly their policies and
revoked at exit, AppRole and JWT logins, 403 -> 77, 404 and missing field ->
78, and an outage survived.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from conftest import PYTHON, base_env, one_error, read_line, report_command, run, start, wait_for, wait_for_log
from testkit.servers import OpenBao, Relay

# Prints "ready" and waits; exits 0 on SIGTERM.
WAITING_CHILD = (
    "import signal, sys; print('ready', flush=True); "
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); signal.pause()"
)


def audit_count(bao: OpenBao, path: str) -> int:
    """Requests to `path` in the server's audit log so far (the shared dev server's: count from a baseline)."""
    if not bao.audit_log.exists():
        return 0
    count = 0
    for line in bao.audit_log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("type") == "request" and entry.get("request", {}).get("path") == path:
            count += 1
    return count


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def bao_env(bao: OpenBao, token: str | None = None, **extra: str) -> dict[str, str]:
    env = base_env(None, STRONGHOLD_VAULT_ADDR=bao.url, **extra)
    env["BAO_TOKEN"] = token or bao.root_token
    return env


def kv_put(bao: OpenBao, path: str, data: dict[str, object]) -> None:
    bao.ok("POST", f"secret/data/{path}", {"data": data})


def policy(bao: OpenBao, name: str, rules: str) -> None:
    bao.ok("PUT", f"sys/policies/acl/{name}", {"policy": rules})


def test_kv_v2_into_env_and_file(bao: OpenBao, shm_dir) -> None:
    path = unique("app")
    kv_put(bao, path, {"STRIPE_KEY": "sk_bao_TESTVALUE", "DB_PASSWORD": "pg_bao_TESTVALUE", "PORT": 5432})
    env = bao_env(
        bao,
        STRIPE_KEY=f"vault://secret/data/{path}#STRIPE_KEY",
        DB_PASSWORD_FILE=f"vault://secret/data/{path}#DB_PASSWORD",
        DB_PORT=f"vault://secret/data/{path}#PORT",
        VAULT_ADDR="http://should-not-leak.invalid",
    )
    result = run(["--dir", str(shm_dir), "--", *report_command("DB_PASSWORD_FILE")], env)
    assert result.code == 0, result.stderr
    report = result.report()
    assert report["env"]["STRIPE_KEY"] == "sk_bao_TESTVALUE"
    assert report["env"]["DB_PORT"] == "5432"
    assert report["files"]["DB_PASSWORD_FILE"]["data"] == "pg_bao_TESTVALUE"
    # SPEC section 9 (turn 2): the address passes to the app (it is not a secret); tokens never do.
    leaked = [name for name in report["env"] if name.startswith(("BAO_", "VAULT_", "STRONGHOLD_"))]
    assert leaked == ["VAULT_ADDR"]
    assert report["env"]["VAULT_ADDR"] == "http://should-not-leak.invalid"
    assert bao.root_token not in result.stdout + result.stderr


def test_static_value_rotates_when_changed(bao: OpenBao, shm_dir, processes) -> None:
    path = unique("rotating")
    kv_put(bao, path, {"KEY": "first-value"})
    env = bao_env(bao, KEY_FILE=f"vault://secret/data/{path}#KEY")
    process = start(["--dir", str(shm_dir), "--vault-poll", "1s", "--", PYTHON, "-c", WAITING_CHILD], env)
    processes.append(process)
    assert read_line(process).strip() == "ready"
    assert (shm_dir / "KEY").read_text() == "first-value"
    kv_put(bao, path, {"KEY": "second-value"})
    wait_for(lambda: (shm_dir / "KEY").read_text() == "second-value", timeout=20, what="the re-read value")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert not shm_dir.exists()


MINTED_CHILD = textwrap.dedent(
    """
    import json, os, sys, urllib.request, urllib.error
    addr, token = sys.argv[1], os.environ["APP_TOKEN"]
    def get(path):
        request = urllib.request.Request(addr + "/v1/" + path, headers={"X-Vault-Token": token})
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, {}
    allowed, _ = get(sys.argv[2])
    denied, _ = get(sys.argv[3])
    _, me = get("auth/token/lookup-self")
    print(json.dumps({"allowed": allowed, "denied": denied, "accessor": me["data"]["accessor"],
                      "policies": me["data"]["policies"], "ttl": me["data"]["ttl"]}), flush=True)
    """
)


def test_minted_token_has_only_its_policies_and_is_revoked_at_exit(bao: OpenBao) -> None:
    path, other, name = unique("minted"), unique("other"), unique("app-read")
    kv_put(bao, path, {"X": "1"})
    kv_put(bao, other, {"X": "2"})
    rules = f'path "secret/data/{path}" {{ capabilities = ["read"] }}\n'
    rules += 'path "auth/token/lookup-self" { capabilities = ["read"] }'  # not in the default policy it lacks
    policy(bao, name, rules)
    env = bao_env(bao, APP_TOKEN=f"vault-token://?policies={name}&ttl=5m")
    argv = ["--", PYTHON, "-c", MINTED_CHILD, bao.url, f"secret/data/{path}", f"secret/data/{other}"]
    result = run(argv, env)
    assert result.code == 0, result.stderr
    seen = json.loads(result.stdout)
    assert (seen["allowed"], seen["denied"]) == (200, 403)
    assert seen["policies"] == [name], "exactly its policies: no default policy"
    assert 0 < seen["ttl"] <= 300
    status, _ = bao.api("POST", "auth/token/lookup-accessor", {"accessor": seen["accessor"]})
    assert status != 200, "the minted token is revoked when the command exits"


def test_no_refresh_exec_with_kv(bao: OpenBao, processes) -> None:
    path = unique("exec")
    kv_put(bao, path, {"K": "exec-value"})
    process = start(["--no-refresh", "--", "sh", "-c", 'echo "$$ $K"'], bao_env(bao, K=f"vault://secret/data/{path}#K"))
    processes.append(process)
    out, _ = process.communicate(timeout=30)
    pid, value = out.split()
    assert (int(pid), value) == (process.pid, "exec-value")


def approle(bao: OpenBao, policies: list[str], **role: object) -> tuple[str, str]:
    """An AppRole role -> (role_id, secret_id)."""
    _, mounts = bao.api("GET", "sys/auth")
    if "approle/" not in mounts.get("data", mounts):
        bao.ok("POST", "sys/auth/approle", {"type": "approle"})
    name = unique("role")
    bao.ok("POST", f"auth/approle/role/{name}", {"token_policies": policies, "token_ttl": "10m", **role})
    role_id = bao.ok("GET", f"auth/approle/role/{name}/role-id")["data"]["role_id"]
    secret_id = bao.ok("POST", f"auth/approle/role/{name}/secret-id", {})["data"]["secret_id"]
    return role_id, secret_id


def approle_env(bao: OpenBao, role: tuple[str, str], secret_file: Path, **references: str) -> dict[str, str]:
    """The environment of an AppRole login; the secret id goes to `secret_file`."""
    role_id, secret_id = role
    secret_file.write_text(secret_id + "\n")
    return base_env(
        None,
        STRONGHOLD_VAULT_ADDR=bao.url,
        STRONGHOLD_VAULT_AUTH="approle",
        STRONGHOLD_VAULT_ROLE_ID=role_id,
        STRONGHOLD_VAULT_SECRET_ID_FILE=str(secret_file),
        **references,
    )


def test_approle_login_removes_the_secret_id_file_and_revokes_its_token(bao: OpenBao, tmp_path) -> None:
    path, name = unique("approle"), unique("reader")
    kv_put(bao, path, {"K": "via-approle"})
    policy(bao, name, f'path "secret/data/{path}" {{ capabilities = ["read"] }}')
    secret_file = tmp_path / "secret-id"
    role_id, secret_id = approle(bao, [name])
    env = approle_env(bao, (role_id, secret_id), secret_file, K=f"vault://secret/data/{path}#K")
    result = run(["--vault-remove-secret-id-file", "--", "sh", "-c", 'echo "$K"'], env)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "via-approle"
    assert not secret_file.exists(), "the secret id file is removed once read"
    assert secret_id not in result.stderr


def test_permission_denied_is_77(bao: OpenBao, tmp_path) -> None:
    allowed, denied, name = unique("allowed"), unique("denied"), unique("narrow")
    kv_put(bao, denied, {"K": "nope"})
    policy(bao, name, f'path "secret/data/{allowed}" {{ capabilities = ["read"] }}')
    token = bao.ok("POST", "auth/token/create", {"policies": [name]})["auth"]["client_token"]
    marker = tmp_path / "ran"
    result = run(["--", "touch", str(marker)], bao_env(bao, token, K=f"vault://secret/data/{denied}#K"))
    assert result.code == 77, result.stderr
    assert "K: permission denied" in result.stderr
    assert not marker.exists()
    assert token not in result.stderr


@pytest.mark.parametrize(
    ("reference", "fragment"),
    [("vault://secret/data/{path}#NOPE", "no field 'NOPE'"), ("vault://secret/data/{path}-missing#K", "nothing at")],
)
def test_missing_field_or_path_is_78_naming_the_variable(bao: OpenBao, shm_dir, reference: str, fragment: str) -> None:
    path = unique("present")
    kv_put(bao, path, {"K": "v"})
    result = run(
        ["--dir", str(shm_dir), "--", "true"],
        bao_env(bao, GOOD_FILE=f"vault://secret/data/{path}#K", BAD=reference.format(path=path)),
    )
    assert result.code == 78, result.stderr
    assert f"BAD: {fragment}" in result.stderr or ("BAD" in result.stderr and fragment in result.stderr)
    assert not shm_dir.exists()


def make_jwt(private_key, claims: dict) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64(signature)


def test_jwt_login_with_a_generated_key_pair(bao: OpenBao, tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    mount, path, name = unique("jwt"), unique("jwtapp"), unique("jwt-reader")
    bao.ok("POST", f"sys/auth/{mount}", {"type": "jwt"})
    bao.ok("POST", f"auth/{mount}/config", {"jwt_validation_pubkeys": [public_pem]})
    policy(bao, name, f'path "secret/data/{path}" {{ capabilities = ["read"] }}')
    bao.ok(
        "POST",
        f"auth/{mount}/role/app",
        {
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": ["stronghold"],
            "token_policies": [name],
        },
    )
    kv_put(bao, path, {"K": "via-jwt"})
    now = int(time.time())
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text(make_jwt(key, {"sub": "shop-api", "aud": "stronghold", "iat": now, "exp": now + 600}))
    env = base_env(
        None,
        STRONGHOLD_VAULT_ADDR=bao.url,
        STRONGHOLD_VAULT_AUTH="jwt",
        STRONGHOLD_VAULT_ROLE="app",
        STRONGHOLD_VAULT_AUTH_MOUNT=mount,
        STRONGHOLD_VAULT_JWT_FILE=str(jwt_file),
        K=f"vault://secret/data/{path}#K",
    )
    result = run(["--", "sh", "-c", 'echo "$K"'], env)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "via-jwt"
    jwt_file.write_text(make_jwt(key, {"sub": "shop-api", "aud": "someone-else", "iat": now, "exp": now + 600}))
    refused = run(["--", "true"], env)
    assert refused.code == 77, refused.stderr


def test_minted_token_is_renewed_before_it_expires(bao: OpenBao, shm_dir, processes) -> None:
    name = unique("short")
    policy(bao, name, 'path "sys/health" { capabilities = ["read"] }')
    env = bao_env(bao, APP_TOKEN_FILE=f"vault-token://?policies={name}&ttl=4s")
    directory = str(shm_dir)
    renewals_before = audit_count(bao, "auth/token/renew-accessor")
    process = start(["--dir", directory, "--log-level", "debug", "--", PYTHON, "-c", WAITING_CHILD], env)
    processes.append(process)
    assert read_line(process).strip() == "ready"
    token_path = Path(directory) / "APP_TOKEN"
    token = token_path.read_text()
    # Two renewals, each at 60-75% of 4 s, end past the first ttl: wait for them, not for the clock.
    wait_for(
        lambda: audit_count(bao, "auth/token/renew-accessor") >= renewals_before + 2, timeout=30, what="2 renewals"
    )
    status, info = bao.api("POST", "auth/token/lookup", {"token": token})
    assert status == 200 and info["data"]["ttl"] > 0, "renewed, still alive after its first 4 s"
    assert token_path.read_text() == token, "renewal keeps the same token"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    status, _ = bao.api("POST", "auth/token/lookup", {"token": token})
    assert status != 200, "revoked at exit"


def test_server_outage_is_survived_and_refresh_resumes(bao: OpenBao, shm_dir, processes) -> None:
    relay = Relay(bao.port)
    path = unique("outage")
    kv_put(bao, path, {"K": "before"})
    env = bao_env(bao, KEY_FILE=f"vault://secret/data/{path}#K")
    env["STRONGHOLD_VAULT_ADDR"] = relay.url
    process = start(["--dir", str(shm_dir), "--vault-poll", "1s", "--", PYTHON, "-c", WAITING_CHILD], env)
    processes.append(process)
    assert read_line(process).strip() == "ready"
    relay.cut()
    kv_put(bao, path, {"K": "during"})
    wait_for_log(process, "refresh failed")
    assert process.poll() is None and (shm_dir / "KEY").read_text() == "before", "keeps its token"
    relay.start()
    wait_for(lambda: (shm_dir / "KEY").read_text() == "during", timeout=30, what="refresh to resume")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_several_addresses_fail_over(bao: OpenBao, tmp_path) -> None:
    from conftest import free_port

    path = unique("failover")
    kv_put(bao, path, {"K": "reached"})
    env = bao_env(bao, K=f"vault://secret/data/{path}#K")
    env["STRONGHOLD_VAULT_ADDR"] = f"http://127.0.0.1:{free_port()},{bao.url}"
    result = run(["--", "sh", "-c", 'echo "$K"'], env)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "reached"


def test_plain_http_to_a_remote_server_is_refused(tmp_path) -> None:
    env = base_env(None, STRONGHOLD_VAULT_ADDR="http://vault.example.invalid:8200", BAO_TOKEN="t", K="vault://a/b#c")
    result = run(["--", "true"], env)
    assert result.code == 78
    assert "plain http://" in result.stderr


def test_check_lists_vault_references(bao: OpenBao) -> None:
    path = unique("check")
    kv_put(bao, path, {"K": "checked-value"})
    result = run(["check"], bao_env(bao, K=f"vault://secret/data/{path}#K", T="vault-token://?policies=default"))
    assert result.code == 0, result.stderr
    assert f"vault://secret/data/{path}#K, static" in result.stdout
    assert "vault-token://?policies=default, ttl" in result.stdout
    assert "checked-value" not in result.stdout


@pytest.mark.parametrize(
    "value", ["vault://secret/data/x", "vault://secret/data/x#", "vault-token://", "vault-token://?ttl=1m"]
)
def test_bad_vault_references_are_78(value: str) -> None:
    result = run(["--", "true"], base_env(None, STRONGHOLD_VAULT_ADDR="http://127.0.0.1:1", BAO_TOKEN="t", K=value))
    assert result.code == 78
    assert "K: " in result.stderr


def test_environment_keeps_no_bao_or_vault_variables_even_without_references() -> None:
    result = run(
        ["--", "env"], base_env(None, BAO_TOKEN="secret-bao-token", VAULT_TOKEN="secret-vault-token", KEEP="1")
    )
    assert result.code == 0
    assert "KEEP=1" in result.stdout
    assert "BAO_TOKEN" not in result.stdout and "VAULT_TOKEN" not in result.stdout


def test_vault_token_from_file(bao: OpenBao, tmp_path) -> None:
    path = unique("tokenfile")
    kv_put(bao, path, {"K": "file-auth"})
    token_file = tmp_path / "token"
    token_file.write_text(bao.root_token)
    env = base_env(
        None,
        STRONGHOLD_VAULT_ADDR=bao.url,
        STRONGHOLD_VAULT_TOKEN_FILE=str(token_file),
        K=f"vault://secret/data/{path}#K",
    )
    result = run(["--", "sh", "-c", 'echo "$K"'], env)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "file-auth"
    assert os.path.exists(token_file), "a token file is never removed"


def reads_of(log_path: Path, api_path: str) -> int:
    count = 0
    for line in log_path.read_text().splitlines():
        entry = json.loads(line)
        request = entry.get("request", {})
        if entry.get("type") == "request" and request.get("path") == api_path and request.get("operation") == "read":
            count += 1
    return count


def test_references_to_one_path_read_it_once(bao: OpenBao) -> None:
    log_path = bao.audit_log
    path = unique("once")
    kv_put(bao, path, {"A": "1", "B": "2", "C": "3"})
    env = bao_env(bao, **{name: f"vault://secret/data/{path}#{name}" for name in ("A", "B", "C")})
    result = run(["--no-refresh", "--", "sh", "-c", 'echo "$A$B$C"'], env)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "123"
    assert reads_of(log_path, f"secret/data/{path}") == 1


def test_login_token_is_renewed_before_it_expires(bao: OpenBao, tmp_path, shm_dir, processes) -> None:
    """An AppRole token of 3 s stays usable for longer: renew-self, not a new login each time."""
    path, name = unique("renewed"), unique("renewer")
    kv_put(bao, path, {"K": "v1"})
    policy(bao, name, f'path "secret/data/{path}" {{ capabilities = ["read"] }}')
    secret_file = tmp_path / "secret-id"
    role = approle(bao, [name], token_ttl="3s", token_max_ttl="60s")
    env = approle_env(bao, role, secret_file, KEY_FILE=f"vault://secret/data/{path}#K")
    renewals_before = audit_count(bao, "auth/token/renew-self")
    process = start(["--dir", str(shm_dir), "--vault-poll", "1s", "--", PYTHON, "-c", WAITING_CHILD], env)
    processes.append(process)
    assert read_line(process).strip() == "ready"
    # Two renew-self, each at 60-75% of 3 s, end past the login token's first 3 s.
    wait_for(lambda: audit_count(bao, "auth/token/renew-self") >= renewals_before + 2, timeout=30, what="2 renewals")
    kv_put(bao, path, {"K": "v2"})
    wait_for(lambda: (shm_dir / "KEY").read_text() == "v2", timeout=20, what="a read with a live token")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert audit_count(bao, "auth/token/renew-self") >= renewals_before + 2
    assert "logging in again" not in process.stderr.read()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def raft(tmp_path_factory):
    from testkit.servers import RaftCluster

    cluster = RaftCluster(tmp_path_factory.mktemp("raft"))
    yield cluster
    cluster.stop()


@pytest.mark.slow
def test_refresh_continues_through_another_node_when_one_dies(raft, shm_dir, processes) -> None:
    """A 3-node Raft cluster: kill the node stronghold-init talks to; the next address takes over."""
    raft.put("app", {"K": "before"})
    env = base_env(None, STRONGHOLD_VAULT_ADDR=",".join(raft.urls), BAO_TOKEN=raft.root_token)
    env["KEY_FILE"] = "vault://secret/data/app#K"
    process = start(["--dir", str(shm_dir), "--vault-poll", "1s", "--", PYTHON, "-c", WAITING_CHILD], env)
    processes.append(process)
    assert read_line(process).strip() == "ready"
    assert (shm_dir / "KEY").read_text() == "before"
    raft.kill(0)  # the first address: the one in use, and the active node
    raft.put("app", {"K": "after"}, via=1)  # waits for a new leader to be elected
    wait_for(lambda: (shm_dir / "KEY").read_text() == "after", timeout=30, what="a refresh through node 1 or 2")
    assert process.poll() is None, "the command kept running throughout"
    wait_for_log(process, "using another address")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_openbao_address_as_the_proxy_url_says_to_use_vault_references(bao: OpenBao) -> None:
    env = base_env(None, STRONGHOLD_PROXY_URL=bao.url, STRONGHOLD_BOOTSTRAP_TOKEN="boot-x-123456")
    env["KEY"] = "stronghold://secret/app"
    result = run(["--", "true"], env)
    assert result.code == 77
    line = one_error(result)
    assert "OpenBao/Vault" in line and "vault://" in line and "STRONGHOLD_VAULT_ADDR" in line


def test_kv_v2_path_without_data_gets_a_hint(bao: OpenBao) -> None:
    path = f"hint-{uuid.uuid4().hex[:8]}"
    bao.ok("POST", f"secret/data/{path}", {"data": {"K": "v"}})
    env = base_env(None, STRONGHOLD_VAULT_ADDR=bao.url, BAO_TOKEN=bao.root_token, KEY=f"vault://secret/{path}#K")
    result = run(["--", "true"], env)
    assert result.code == 78
    line = one_error(result)
    assert "KEY" in line and "KV v2" in line and f"vault://secret/data/{path}#<field>" in line


def test_kv_v2_path_without_data_refused_by_policy_gets_a_conditional_hint(bao: OpenBao) -> None:
    path = f"hint-{uuid.uuid4().hex[:8]}"
    bao.ok("POST", f"secret/data/{path}", {"data": {"K": "v"}})
    name = f"reader-{path}"
    bao.ok("PUT", f"sys/policies/acl/{name}", {"policy": f'path "secret/data/{path}" {{ capabilities = ["read"] }}'})
    token = bao.ok("POST", "auth/token/create", {"policies": [name], "ttl": "5m"})["auth"]["client_token"]
    env = base_env(None, STRONGHOLD_VAULT_ADDR=bao.url, BAO_TOKEN=token, KEY=f"vault://secret/{path}#K")
    result = run(["--", "true"], env)
    assert result.code == 77
    assert "if secret/ is a KV v2 mount" in one_error(result)
