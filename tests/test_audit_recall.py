"""Recall on files whose name says what they hold, and the Dockerfile check's names (issue 23).

A file holding nothing but a high-entropy value is a credential when its name says so
(`aws_secret`, `api-token`, `id_rsa.bak`, `master.key`); the same value under a name that
says *about* a secret (`token.sha256`, `id_rsa.pub`), a checksum, a UUID, a lock file or a
placeholder is not.  A Dockerfile's `ARG NPM_TOKEN` or `COPY app.env` is a finding about a
name: the name is its key, with no redacted value and no fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_audit import assert_no_value, audit, findings_of, fp

from testkit.audit_builder import all_forms
from testkit.audit_images import API, AWS, KEY_BODY, MASTER, NAMED

NAMED_FINDINGS = {
    ("file", 0, "/run/aws_secret", None, fp(AWS)),
    ("file", 0, "/app/api-token", None, fp(API)),
    ("file", 0, "/app/config/master.key", None, fp(MASTER)),
    ("file", 0, "/root/.ssh/id_rsa.bak", None, fp("".join(KEY_BODY))),
}


@pytest.mark.parametrize("form", ["docker-archive", "oci"])
def test_bare_values_in_files_named_for_them(tmp_path: Path, form: str) -> None:
    target = all_forms(NAMED, tmp_path)[form]
    result = audit("--format", "json", target)
    assert result.returncode == 1, result.stderr
    assert findings_of(result) == NAMED_FINDINGS
    assert {f["rule"] for f in json.loads(result.stdout)["targets"][0]["findings"]} == {"secret-named-file"}
    assert_no_value(result, AWS, API, MASTER, *KEY_BODY)


DOCKERFILE = """FROM debian:bookworm
ARG NPM_TOKEN
COPY app.env /app/app.env
RUN echo "//registry.npmjs.org/:_authToken=${NPM_TOKEN}" > ~/.npmrc && npm ci
ENV STRIPE_SECRET_KEY=sk_live_4eC39HqLyjWDarjtT1zdp7dc
"""


def test_dockerfile_names_are_keys_without_fingerprints(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(DOCKERFILE)
    result = audit("--format", "json", str(path))
    assert result.returncode == 1, result.stderr
    findings = {(f["rule"], f["key"]): f for f in json.loads(result.stdout)["targets"][0]["findings"]}
    for rule, key in (("secret-named-build-arg", "NPM_TOKEN"), ("credential-file-copied", "app.env"),
                      ("secret-build-arg-used", "NPM_TOKEN")):  # fmt: skip
        finding = findings[(rule, key)]
        assert finding["fingerprint"] is None and finding["redacted"] is None, finding
    value = findings[("detect-secrets/StripeDetector", "STRIPE_SECRET_KEY")]
    assert value["fingerprint"] == fp("sk_live_4eC39HqLyjWDarjtT1zdp7dc") and value["redacted"].startswith("sk_l…")
    text = audit(str(path)).stdout
    assert "NP…(9)" not in text and "ap…(7)" not in text and "NPM_TOKEN [secret-named-build-arg]" in text
    sarif = json.loads(audit("--format", "sarif", str(path)).stdout)
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(sarif)
    assert all(r["partialFingerprints"] for r in sarif["runs"][0]["results"])
