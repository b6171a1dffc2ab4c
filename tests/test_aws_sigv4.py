"""The SigV4 signer against AWS's published test-suite vectors (tests/data/aws-sigv4/SOURCE.md).

Each vector is a raw request and the Authorization header AWS computed for
it; a signer that canonicalises one thing differently (header trimming,
query order, UTF-8 encoding, the session token) gets another signature.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from injector.sources.aws.sigv4 import canonical_request, sign

SUITE = Path(__file__).parent / "data" / "aws-sigv4"
CASES = sorted(p.stem for p in SUITE.glob("*.req"))
# The suite's published example identity (not a credential).
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def parse_request(text: str) -> tuple[str, str, list[tuple[str, str]], dict[str, str], bytes]:
    head, _, body = text.partition("\n\n")
    request_line, *header_lines = head.split("\n")
    method, target, _version = request_line.split(" ")
    path, _, raw_query = target.partition("?")
    query = [tuple(item.partition("=")[::2]) for item in raw_query.split("&")] if raw_query else []
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name] = f"{headers[name]},{value.strip()}" if name in headers else value
    return method, path, query, headers, body.encode()  # type: ignore[return-value]


def test_the_suite_is_there() -> None:
    assert len(CASES) >= 7, CASES


@pytest.mark.parametrize("case", CASES)
def test_signature_matches_the_published_vector(case: str) -> None:
    method, path, query, headers, body = parse_request((SUITE / f"{case}.req").read_text())
    date = headers["X-Amz-Date"]
    token = headers.pop("X-Amz-Security-Token", None)
    signed = sign(
        method,
        path,
        query,
        headers,
        body,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        session_token=token,
        region="us-east-1",
        service="service",
        amz_date=date,
    )
    assert signed["Authorization"] == (SUITE / f"{case}.authz").read_text().strip()


def test_canonical_request_matches_the_published_one() -> None:
    method, path, query, headers, body = parse_request((SUITE / "post-x-www-form-urlencoded.req").read_text())
    text, _ = canonical_request(method, path, query, headers, hashlib.sha256(body).hexdigest())
    assert text == (SUITE / "post-x-www-form-urlencoded.creq").read_text()
