"""AWS Signature Version 4 on the standard library (hmac, hashlib).

Why not botocore: importing it costs ~300 ms, which every container start
would pay.  What the AWS source sends is small (POST / with a JSON or form
body), but the signer is the general algorithm and is checked against
AWS's published test-suite vectors (tests/data/aws-sigv4/).

    headers = sign("POST", "/", [], {"host": ..., "content-type": ...}, body,
                   keys, region="eu-west-1", service="secretsmanager")

`headers` is the given ones plus X-Amz-Date, X-Amz-Security-Token (with a
session token) and Authorization.  Every header given is signed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ALGORITHM = "AWS4-HMAC-SHA256"
_UNRESERVED = "-_.~"  # RFC 3986's unreserved marks: never percent-encoded


def _encode(text: str, safe: str = "") -> str:
    return quote(text, safe=_UNRESERVED + safe)


def canonical_request(
    method: str, path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """(the canonical request, the signed-headers list) of the SigV4 spec, step 1."""
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted((_encode(k), _encode(v)) for k, v in query))
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        # Trimmed, inner runs of spaces made one (the suite's get-header-value-trim).
        lowered[name.lower()] = " ".join(str(value).split())
    names = sorted(lowered)
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in names)
    signed = ";".join(names)
    text = "\n".join((method, _encode(path or "/", safe="/"), canonical_query, canonical_headers, signed, payload_hash))
    return text, signed


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    session_token: str | None,
    region: str,
    service: str,
    amz_date: str | None = None,
) -> dict[str, str]:
    """`headers` with X-Amz-Date, the session token and Authorization added (all of them signed)."""
    signed_headers = dict(headers)
    if amz_date is None:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if not any(name.lower() == "x-amz-date" for name in signed_headers):
        signed_headers["X-Amz-Date"] = amz_date
    if session_token:
        signed_headers["X-Amz-Security-Token"] = session_token
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    creq, signed = canonical_request(method, path, query, signed_headers, hashlib.sha256(body).hexdigest())
    string_to_sign = "\n".join((ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()))
    signature = hmac.new(
        signing_key(secret_key, date, region, service), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    signed_headers["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return signed_headers
