"""A `vault-token://` token the app can actually use (SPEC section 9, turn 2).

The app gets the server's address, CA and namespace variables (not secrets);
every other BAO_*/VAULT_* variable stays out.  `&default_policy=true` adds
OpenBao's `default` policy, so the app's token can look itself up and renew
itself; without it the token has exactly the policies asked for.
Against the real OpenBao dev server.
"""

from __future__ import annotations

import json

import pytest

from conftest import PYTHON, base_env, report_command, run
from testkit.servers import OpenBao

PASSED = {
    "BAO_ADDR": "http://bao.example:8200",
    "VAULT_ADDR": "http://vault.example:8200",
    "BAO_CACERT": "/etc/ssl/bao-ca.pem",
    "VAULT_CACERT": "/etc/ssl/vault-ca.pem",
    "BAO_NAMESPACE": "team-a",
    "VAULT_NAMESPACE": "team-b",
}
REMOVED = {
    "BAO_TOKEN": "bao-SECRET-token",
    "VAULT_TOKEN": "vault-SECRET-token",
    "VAULT_ROLE_ID": "role-SECRET",
    "BAO_SECRET_ID": "secret-SECRET",
    "STRONGHOLD_VAULT_TOKEN": "stronghold-SECRET",
}

# The app: uses APP_TOKEN against $BAO_ADDR, as any OpenBao client library would.
APP = r"""
import json, os, urllib.error, urllib.request
def call(method, path):
    request = urllib.request.Request(
        os.environ["BAO_ADDR"] + "/v1/" + path, method=method, data=b"{}" if method == "POST" else None,
        headers={"X-Vault-Token": os.environ["APP_TOKEN"]})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
print(json.dumps({"lookup": call("GET", "auth/token/lookup-self"), "renew": call("POST", "auth/token/renew-self")}))
"""


def test_address_ca_and_namespace_reach_the_app_and_credentials_do_not() -> None:
    result = run(["--", *report_command()], base_env(**PASSED, **REMOVED))
    assert result.code == 0, result.stderr
    child = result.report()["env"]
    for name, value in PASSED.items():
        assert child.get(name) == value, name
    for name in REMOVED:
        assert name not in child
    assert "SECRET" not in result.stdout


@pytest.mark.parametrize(("option", "expected"), [("&default_policy=true", 200), ("", 403)])
def test_minted_token_can_look_itself_up_and_renew_only_with_the_default_policy(
    bao: OpenBao, option: str, expected: int
) -> None:
    env = base_env(
        BAO_ADDR=bao.url, BAO_TOKEN=bao.root_token, APP_TOKEN=f"vault-token://?policies=app-x{option}&ttl=10m"
    )
    result = run(["--", PYTHON, "-c", APP], env)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"lookup": expected, "renew": expected}


def test_check_shows_the_default_policy_option(bao: OpenBao) -> None:
    env = base_env(
        BAO_ADDR=bao.url, BAO_TOKEN=bao.root_token, APP_TOKEN="vault-token://?policies=a,b&default_policy=true"
    )
    result = run(["check"], env)
    assert result.code == 0, result.stderr
    assert "vault-token://?policies=a,b&default_policy=true" in result.stdout


def test_bad_default_policy_value_is_78() -> None:
    result = run(["--", "true"], base_env(APP_TOKEN="vault-token://?policies=a&default_policy=yes"))
    assert result.code == 78
    assert "APP_TOKEN" in result.stderr and "default_policy" in result.stderr
