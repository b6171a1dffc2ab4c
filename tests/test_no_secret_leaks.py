"""No token, bootstrap token or session token in any output, at any level (SPEC section 3).

Runs the binary through success and failure paths with the most verbose
logging, in both log formats, and greps everything it printed.
"""

from __future__ import annotations

import pytest

from conftest import TestProxy, base_env, run
from injector.devproxy import Answer

SCENARIOS = ["success", "refused-with-echo", "not-found", "broken-then-good", "check", "no-refresh"]


def scenario_args(proxy: TestProxy, scenario: str, shm_dir, log_format: str) -> list[str]:
    verbose = ["--log-level", "debug", "--log-format", log_format, "--dir", str(shm_dir)]
    if scenario == "refused-with-echo":
        # A careless proxy that echoes the bootstrap token in its error text.
        proxy.script("/v1/auth/login", Answer(403, {"error": f"token {proxy.token} is not valid"}))
    elif scenario == "not-found":
        proxy.script("/v1/credentials", Answer(404, {"error": "no such secret", "name": "A"}))
    elif scenario == "broken-then-good":
        proxy.script(
            "/v1/credentials",
            Answer(200, {"credentials": [{"name": "A", "value": "LEAKY\0VALUE", "ttl": 0}]}),
        )
    if scenario == "check":
        return ["check", *verbose]
    extra = ["--no-refresh"] if scenario == "no-refresh" else []
    return [*verbose, *extra, "--", "true"]


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_secret_in_any_output(proxy: TestProxy, shm_dir, scenario: str, log_format: str) -> None:
    env = base_env(proxy, A="stronghold://stripe/live", B_FILE="stronghold://postgres/app")
    result = run(scenario_args(proxy, scenario, shm_dir, log_format), env)
    output = result.stdout + result.stderr
    assert result.stderr, "the scenario must log something for the test to mean anything"
    secrets = [s for s in proxy.secrets_seen() if s]
    assert proxy.token in secrets
    for secret in secrets:
        assert secret not in output, f"a secret leaked in scenario {scenario}"
    assert "LEAKY" not in output
    if scenario == "refused-with-echo":
        assert result.code == 77 and "<redacted>" in output
