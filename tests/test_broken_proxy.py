"""A broken or unsteady proxy (SPEC section 4): transient, retried, never delivered.

Each broken answer is served once and then the proxy behaves: the run must
succeed with a good token, and the broken value must never reach the child.
Served for ever, the same answer must end in exit 69 with nothing started.
"""

from __future__ import annotations

import pytest

from conftest import RESET, TestProxy, base_env, report_command, run
from injector.devproxy import Answer

POISON = "POISONED-VALUE"


def good(name: str = "A_FILE", value: str = "v") -> dict:
    return {"name": name, "value": value, "ttl": 60, "lease_id": "l1"}


BROKEN = {
    "not json": Answer(200, b"<html>oops</html>"),
    "over 1 MiB": Answer(200, b'{"credentials": [], "pad": "' + b"x" * (1024 * 1024) + b'"}'),
    "not an object": Answer(200, [1, 2]),
    "no credentials list": Answer(200, {"creds": []}),
    "missing value": Answer(200, {"credentials": [{"name": "A_FILE", "ttl": 60}]}),
    "empty value": Answer(200, {"credentials": [good(value="")]}),
    "value not a string": Answer(200, {"credentials": [{**good(), "value": 42}]}),
    "NUL in value": Answer(200, {"credentials": [good(value=POISON + "\0x")]}),
    "ttl zero": Answer(200, {"credentials": [{**good(value=POISON), "ttl": 0}]}),
    "ttl negative": Answer(200, {"credentials": [{**good(value=POISON), "ttl": -5}]}),
    "ttl not an integer": Answer(200, {"credentials": [{**good(value=POISON), "ttl": "60"}]}),
    "ttl float": Answer(200, {"credentials": [{**good(value=POISON), "ttl": 1.5}]}),
    "ttl bool": Answer(200, {"credentials": [{**good(value=POISON), "ttl": True}]}),
    "missing name": Answer(200, {"credentials": []}),
    "extra name": Answer(200, {"credentials": [good(value=POISON), good("OTHER", POISON)]}),
    "duplicate name": Answer(200, {"credentials": [good(value=POISON), good(value=POISON)]}),
    "redirect": Answer(307, None, {"Location": "http://127.0.0.1:1/steal"}),
    "502": Answer(502, {"error": "bad gateway"}),
    "429": Answer(429, {"error": "slow down"}),
    "connection reset": RESET,
}
# A reset on a kept-alive connection is first retried at once on a fresh one
# (the server may just have closed an idle connection), so it takes two resets
# to reach the backoff path.
SERVED = {case: [answer, answer] if answer == RESET else [answer] for case, answer in BROKEN.items()}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_answer_once_is_retried_and_never_delivered(proxy: TestProxy, shm_dir, case: str) -> None:
    proxy.script("/v1/credentials", *SERVED[case])
    env = base_env(proxy, A_FILE="stronghold://stripe/live")
    result = run(["--dir", str(shm_dir), "--startup-timeout", "20", "--", *report_command("A_FILE")], env)
    assert result.code == 0, result.stderr
    delivered = result.report()["files"]["A_FILE"]["data"]
    assert delivered == proxy.issued_values[-1]
    assert POISON not in result.stdout
    assert proxy.paths().count("/v1/credentials") == len(SERVED[case]) + 1
    assert "retrying" in result.stderr


@pytest.mark.parametrize("case", ["not json", "NUL in value", "extra name", "redirect"])
def test_broken_for_ever_is_69_and_nothing_starts(proxy: TestProxy, shm_dir, tmp_path, case: str) -> None:
    proxy.script("/v1/credentials", *[BROKEN[case]] * 1000)
    marker = tmp_path / "ran"
    env = base_env(proxy, A_FILE="stronghold://stripe/live")
    result = run(["--dir", str(shm_dir), "--startup-timeout", "1", "--", "touch", str(marker)], env)
    assert result.code == 69, result.stderr
    assert "gave up after the start-up timeout" in result.stderr
    assert not marker.exists()
    assert not shm_dir.exists()


def test_redirect_is_not_followed(proxy: TestProxy, make_proxy, shm_dir) -> None:
    thief = make_proxy()
    proxy.script("/v1/credentials", Answer(307, None, {"Location": thief.url + "/v1/credentials"}))
    env = base_env(proxy, A_FILE="stronghold://stripe/live")
    result = run(["--dir", str(shm_dir), "--", "true"], env)
    assert result.code == 0, result.stderr
    assert thief.requests == [], "the bearer token must never follow a redirect"
    assert "redirect" in result.stderr


def test_retry_after_is_honoured(proxy: TestProxy, shm_dir) -> None:
    proxy.script("/v1/credentials", Answer(503, {"error": "later"}, {"Retry-After": "2"}))
    env = base_env(proxy, A_FILE="stronghold://stripe/live")
    result = run(["--dir", str(shm_dir), "--", "true"], env)
    assert result.code == 0, result.stderr
    first, second = [r.at for r in proxy.requests if r.path == "/v1/credentials"]
    assert second - first >= 1.9


def test_401_on_credentials_logs_in_again_once_and_repeats(proxy: TestProxy, shm_dir) -> None:
    proxy.script("/v1/credentials", Answer(401, {"error": "session expired"}))
    env = base_env(proxy, A="stronghold://stripe/live")
    result = run(["--", *report_command()], env)
    assert result.code == 0, result.stderr
    assert proxy.paths() == [
        "/v1/auth/login",
        "/v1/credentials",
        "/v1/auth/login",
        "/v1/credentials",
        "/v1/leases/revoke",
    ]
    assert result.report()["env"]["A"] == proxy.issued_values[-1]


def test_401_twice_is_refused_77(proxy: TestProxy) -> None:
    proxy.script("/v1/credentials", Answer(401, {}), Answer(401, {}))
    result = run(["--", "true"], base_env(proxy, A="stronghold://stripe/live"))
    assert result.code == 77, result.stderr


def test_broken_login_answer_is_transient(proxy: TestProxy) -> None:
    proxy.script("/v1/auth/login", Answer(200, {"session_token": "bad\r\nInjected: header", "ttl": 60}))
    result = run(["--", "true"], base_env(proxy, A="stronghold://stripe/live"))
    assert result.code == 0, result.stderr
    assert proxy.paths().count("/v1/auth/login") == 2
