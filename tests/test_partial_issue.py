"""A partial issue revokes what it got: when one source (or one OpenBao path) fails after another
succeeded, the leases already issued are revoked before the failure is reported (issue 19).

Real OpenBao dev server, real test proxy, the real binary.
"""

from __future__ import annotations

import uuid

from conftest import TestProxy, base_env, run
from testkit.servers import OpenBao


def _live_display_names(bao: OpenBao) -> list[str]:
    status, data = bao.api("LIST", "auth/token/accessors")
    assert status == 200, data
    names = []
    for accessor in data["data"]["keys"]:
        status, info = bao.api("POST", "auth/token/lookup-accessor", {"accessor": accessor})
        if status == 200:
            names.append(info["data"].get("display_name", ""))
    return names


def test_a_token_minted_before_another_path_fails_is_revoked(bao: OpenBao) -> None:
    tag = uuid.uuid4().hex[:8]
    name = f"A_{tag.upper()}"
    env = base_env(
        None,
        STRONGHOLD_VAULT_ADDR=bao.url,
        BAO_TOKEN=bao.root_token,
        **{
            name: "vault-token://?policies=default&ttl=10m",  # sorted first: minted first
            "Z_MISSING": f"vault://secret/data/missing-{uuid.uuid4().hex[:8]}#x",  # then a 404
        },
    )
    result = run(["--", "true"], env)
    assert result.code == 78, result.stderr
    leftovers = [n for n in _live_display_names(bao) if tag in n]  # display name: token-stronghold-init-a-<tag>
    assert not leftovers, f"the token minted for {name} outlived the failed issue: {leftovers}"


def test_a_proxy_lease_is_revoked_when_the_openbao_part_fails(make_proxy, bao: OpenBao) -> None:
    proxy: TestProxy = make_proxy()
    env = base_env(
        proxy,
        STRONGHOLD_VAULT_ADDR=bao.url,
        BAO_TOKEN=bao.root_token,
        A="stronghold://stripe/live",  # the proxy issues first
        Z_MISSING=f"vault://secret/data/missing-{uuid.uuid4().hex[:8]}#x",  # then OpenBao answers 404
    )
    result = run(["--", "true"], env)
    assert result.code == 78, result.stderr
    assert len(proxy.leases_issued) == 1
    assert proxy.leases_issued[0] in proxy.revoked, "the proxy's lease was dropped without being revoked"
