"""Signed calls to AWS services, and what each answer means.

Two wire protocols: JSON 1.1 (Secrets Manager, SSM: POST / with an
X-Amz-Target header) and Query (STS: a form body, an XML answer).  Both go
through the same Transport as the other sources (one keep-alive connection
per endpoint and thread, bounded in time and size, no redirects).

An AWS error code decides the exception (SPEC 12): a refused signature or
identity is 77, an unknown secret or parameter 78 naming the variable,
throttling and 5xx transient (retried, then 69), a server that does not know
an action `UnknownActionError` (the caller falls back to single calls).
"""

from __future__ import annotations

import json
import re
from collections import namedtuple

from injector.errors import (
    BrokenAnswerError,
    ConfigError,
    NotFoundError,
    RefusedError,
    StrongholdError,
    TransientError,
    UnavailableError,
)
from injector.log import log
from injector.sources.aws.sigv4 import sign

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from injector.sources.transport import Response, Transport

JSON_TARGETS = {"secretsmanager": "secretsmanager", "ssm": "AmazonSSM"}
DEFAULT_HOSTS = {"secretsmanager": "secretsmanager", "ssm": "ssm", "sts": "sts"}
STS_VERSION = "2011-06-15"
MAX_MESSAGE = 200  # characters of AWS's error message shown in ours

REFUSED_CODES = (
    "AccessDenied",  # AccessDenied, AccessDeniedException
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",  # ExpiredToken, ExpiredTokenException
    "InvalidClientTokenId",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "AuthFailure",
    "InvalidIdentityToken",
    "IDPRejectedClaim",
    "NotAuthorized",
    "DecryptionFailure",  # KMS refused to decrypt the secret for this identity
)
NOT_FOUND_CODES = ("ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound", "NoSuchEntity")
CONFIG_CODES = (
    "ValidationException",
    "ValidationError",
    "InvalidParameter",  # InvalidParameterException, InvalidParameterValue, InvalidParameterCombination
    "InvalidRequestException",  # e.g. a secret scheduled for deletion
    "MalformedPolicyDocument",
    "PackedPolicyTooLarge",
    "RegionDisabled",
)
TRANSIENT_CODES = (
    "Throttl",  # Throttling, ThrottlingException, ThrottledException
    "TooManyRequests",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServiceError",
    "InternalServerError",
    "InternalError",
    "IDPCommunicationError",
)
UNKNOWN_ACTION_CODES = ("UnknownOperation", "InvalidAction", "UnsupportedOperation", "NotImplemented")
_XML_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_XML_MESSAGE = re.compile(rb"<Message>([^<]{0,2000})</Message>")


class Keys(namedtuple("Keys", "access_key secret_key token expires_at")):
    """An identity's keys; `expires_at` on time.monotonic()'s clock (inf: static keys).  repr shows no key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Keys(temporary={self.token is not None})"


class UnknownActionError(UnavailableError):
    """The server does not know the action (an older or emulated endpoint): use single calls."""


def error_code(answer: Response) -> tuple[str, str]:
    """(code, message) of an AWS error answer, JSON (`__type`) or XML (`<Code>`); ("", "") if neither."""
    code = message = ""
    try:
        data = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        raw = data.get("__type") or data.get("code") or data.get("Code") or ""
        code = str(raw).rsplit("#", 1)[-1].split(":", 1)[0]
        message = str(data.get("message") or data.get("Message") or "")
    else:
        found = _XML_CODE.search(answer.body)
        if found:
            code = found.group(1).decode("utf-8", "replace")
            text = _XML_MESSAGE.search(answer.body)
            message = text.group(1).decode("utf-8", "replace") if text else ""
    return code.strip(), message


def _clean(text: str) -> str:
    # Redacted before it is cut, as transport.error_detail does: an echoed key must not survive in part.
    return "".join(c if c.isprintable() else " " for c in log.redact(text))[:MAX_MESSAGE].strip()


def error_for(answer: Response, *, service: str, action: str, names: str) -> StrongholdError:
    """The exception an unsuccessful answer means (SPEC 12: Errors)."""
    code, message = error_code(answer)
    detail = f"{code}" + (f": {_clean(message)}" if message else "") if code else f"status {answer.status}"
    text = f"{names}: {service} {action} failed ({detail})"
    if code.startswith(UNKNOWN_ACTION_CODES):
        return UnknownActionError(text)
    if code.startswith(REFUSED_CODES) or (not code and answer.status in (401, 403)):
        return RefusedError(text)
    if code.startswith(NOT_FOUND_CODES):
        return NotFoundError(text)
    if code.startswith(TRANSIENT_CODES) or answer.status >= 500 or answer.status == 429:
        return TransientError(text, retry_after=answer.retry_after)
    if 300 <= answer.status < 400:
        return BrokenAnswerError(f"{names}: {service} answered a redirect ({answer.status}), which is never followed")
    if code.startswith(CONFIG_CODES):
        return ConfigError(text)
    return UnavailableError(text)


class AwsClient:
    """Signed requests to the endpoint of each service and region."""

    def __init__(self, endpoint_for: Callable[[str, str], Transport]) -> None:
        self._endpoint_for = endpoint_for  # (service, region) -> its Transport

    def _send(
        self,
        service: str,
        region: str,
        headers: dict[str, str],
        body: bytes,
        keys: Keys | None,
        *,
        names: str,
        action: str,
        timeout: float | None = None,
    ) -> Response:
        transport = self._endpoint_for(service, region)
        host = transport.host_header
        headers = {"Host": host, **headers}
        if keys is not None:
            headers = sign(
                "POST",
                transport.path_prefix + "/",
                (),
                headers,
                body,
                access_key=keys.access_key,
                secret_key=keys.secret_key,
                session_token=keys.token,
                region=region,
                service=service,
            )
        try:
            return transport.request("POST", "/", body, headers=headers, timeout=timeout)
        except TransientError as exc:  # (a broken answer too: over 1 MiB)
            raise type(exc)(f"{names}: {service} {action}: {exc.message}", retry_after=exc.retry_after) from None

    def json_call(
        self, service: str, region: str, action: str, body: Mapping[str, object], keys: Keys, *, names: str
    ) -> dict:
        """A JSON 1.1 call (Secrets Manager, SSM): the answer's object, or the exception its error means."""
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"{JSON_TARGETS[service]}.{action}",
        }
        answer = self._send(service, region, headers, json.dumps(body).encode(), keys, names=names, action=action)
        if answer.status != 200:
            raise error_for(answer, service=service, action=action, names=names)
        try:
            data = json.loads(answer.body)
        except (ValueError, UnicodeDecodeError):
            raise BrokenAnswerError(f"{names}: {service} {action}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise BrokenAnswerError(f"{names}: {service} {action}: the answer is not a JSON object")
        return data

    def query_call(
        self, region: str, action: str, params: Sequence[tuple[str, str]], keys: Keys | None, *, names: str
    ) -> dict[str, str]:
        """An STS Query call (unsigned when `keys` is None): the fields of its <Credentials> element."""
        from urllib.parse import urlencode

        body = urlencode([("Action", action), ("Version", STS_VERSION), *params]).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "Accept": "text/xml"}
        answer = self._send("sts", region, headers, body, keys, names=names, action=action)
        if answer.status != 200:
            raise error_for(answer, service="sts", action=action, names=names)
        return credentials_of(answer.body, f"{names}: sts {action}")


def credentials_of(body: bytes, what: str) -> dict[str, str]:
    """AccessKeyId, SecretAccessKey, SessionToken and Expiration of an STS answer (BrokenAnswerError if not).

    Read with two patterns, not xml.etree: the answer is flat and small, and the
    Python-free bundle leaves the xml package out (scripts/build-bundle).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BrokenAnswerError(f"{what}: the answer is not UTF-8 XML") from None
    block = _CREDENTIALS.search(text)
    if block is None:
        raise BrokenAnswerError(f"{what}: the answer has no Credentials")
    fields: dict[str, str] = {}
    for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"):
        found = re.search(rf"<{name}>([^<]*)</{name}>", block.group(1))
        value = _xml_text(found.group(1)).strip() if found else ""
        if not value:
            raise BrokenAnswerError(f"{what}: the answer has no Credentials.{name}")
        fields[name] = value
    for name in ("AccessKeyId", "SecretAccessKey", "SessionToken"):
        log.protect(fields[name])
    return fields


_CREDENTIALS = re.compile(r"<Credentials>(.*?)</Credentials>", re.DOTALL)
_ENTITY = re.compile(r"&(#x[0-9A-Fa-f]{1,6}|#[0-9]{1,7}|amp|lt|gt|quot|apos);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _xml_text(raw: str) -> str:
    """XML character data with its five entities and character references resolved."""

    def resolve(match: re.Match[str]) -> str:
        entity = match.group(1)
        if entity.startswith("#"):
            code = int(entity[2:], 16) if entity[1] in "xX" else int(entity[1:])
            return chr(code) if 0 < code <= 0x10FFFF else ""
        return _NAMED[entity]

    return _ENTITY.sub(resolve, raw)


def remaining_seconds(expiration: str, what: str) -> float:
    """Seconds until an ISO 8601 Expiration (`2026-12-02T07:00:00Z`), by the wall clock."""
    import time
    from datetime import datetime

    try:
        when = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        raise BrokenAnswerError(f"{what}: Expiration is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise BrokenAnswerError(f"{what}: Expiration has no time zone")
    return when.timestamp() - time.time()
