"""TLS to the proxy (SPEC section 3): verification is never turned off silently.

Certificates come from trustme (test-only). A certificate from an unknown CA,
or a handshake the server refuses, fails at once with 69: retrying cannot fix
it, so it is not retried.
"""

from __future__ import annotations

import ssl
import time

import pytest
import trustme

from conftest import TestProxy, base_env, run


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def served(ca, make_proxy):
    """TLS test proxies with a certificate from `ca`, optionally requiring a client certificate."""

    def factory(*, require_client_cert: bool = False) -> TestProxy:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            ca.configure_trust(context)
        return make_proxy(tls=context)

    return factory


def test_valid_chain_with_ca_bundle_is_accepted(ca, served, tmp_path) -> None:
    proxy = served()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    result = run(
        ["--ca-bundle", str(bundle), "--", "sh", "-c", 'echo "$K"'], base_env(proxy, K="stronghold://stripe/live")
    )
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == proxy.issued_values[0]


@pytest.mark.parametrize("bundle_from", ["other-ca", "system-store"])
def test_untrusted_certificate_is_refused_at_once_with_69(served, tmp_path, bundle_from: str) -> None:
    proxy = served()
    args = []
    if bundle_from == "other-ca":
        bundle = tmp_path / "other.pem"
        trustme.CA().cert_pem.write_to_path(str(bundle))
        args = ["--ca-bundle", str(bundle)]
    started = time.monotonic()
    result = run([*args, "--startup-timeout", "20", "--", "true"], base_env(proxy, K="stronghold://stripe/live"))
    assert result.code == 69, result.stderr
    assert "TLS with localhost failed" in result.stderr and "certificate" in result.stderr.lower()
    assert "retrying" not in result.stderr
    assert time.monotonic() - started < 15, "not retried until the start-up timeout"
    assert proxy.requests == []


def test_mutual_tls_required_and_presented(ca, served, tmp_path) -> None:
    proxy = served(require_client_cert=True)
    bundle, cert, key = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    ca.cert_pem.write_to_path(str(bundle))
    client = ca.issue_cert("stronghold-init@shop-api")
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    env = base_env(proxy, K="stronghold://stripe/live", STRONGHOLD_CA_BUNDLE=str(bundle))
    refused = run(["--startup-timeout", "5", "--", "true"], env)
    assert refused.code == 69, refused.stderr
    assert "TLS" in refused.stderr or "cannot reach" in refused.stderr
    env.update(STRONGHOLD_CLIENT_CERT=str(cert), STRONGHOLD_CLIENT_KEY=str(key))
    accepted = run(["--", "sh", "-c", 'echo "$K"'], env)
    assert accepted.code == 0, accepted.stderr
    assert accepted.stdout.strip() == proxy.issued_values[-1]


def test_missing_or_bad_tls_files_are_78(tmp_path) -> None:
    env = base_env(None, STRONGHOLD_PROXY_URL="https://localhost:1", STRONGHOLD_BOOTSTRAP_TOKEN="b", K="stronghold://a")
    missing = run(["--ca-bundle", str(tmp_path / "nope.pem"), "--", "true"], env)
    assert missing.code == 78 and "--ca-bundle" in missing.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    bad = run(["--ca-bundle", str(garbage), "--", "true"], env)
    assert bad.code == 78, bad.stderr
    assert "cannot load the TLS files" in bad.stderr
