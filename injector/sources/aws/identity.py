"""stronghold-init's own AWS identity: the SDKs' default chain, in their order (SPEC 12).

    1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
    2. web identity: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (EKS IRSA) -> AssumeRoleWithWebIdentity
    3. container credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI (ECS, EKS Pod Identity)
    4. the shared files: AWS_PROFILE's static keys in AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE
    5. IMDSv2: a token PUT, then the instance role's credentials (off with AWS_EC2_METADATA_DISABLED=true)

`pick_identity` chooses the provider from the environment alone (no network,
78 for what can never work); the keys are fetched on first use and fetched
again before temporary ones expire.  A variable whose value is a reference is
for the child, never part of this identity.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from injector.errors import BrokenAnswerError, ConfigError, NotFoundError, RefusedError, TransientError
from injector.log import log
from injector.netaddr import is_loopback
from injector.settings.references import is_reference
from injector.sources.aws.client import AwsClient, Keys, remaining_seconds
from injector.sources.wiring import check_static_credential, read_secret_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.sources.transport import Response, Transport

# The addresses the SDKs allow container credentials over plain http (ECS, EKS Pod Identity).
CONTAINER_HOSTS = frozenset({"169.254.170.2", "169.254.170.23", "fd00:ec2::23"})
ECS_ADDRESS = "http://169.254.170.2"
IMDS_ADDRESS = "http://169.254.169.254"
IMDS_HOSTS = frozenset({"169.254.169.254", "fd00:ec2::254"})
IMDS_TOKEN_TTL = 21600  # seconds, the most IMDSv2 grants
METADATA_TIMEOUT = 2.0  # seconds per metadata request; start-up retries within --startup-timeout
RENEW_BEFORE = 900.0  # seconds: renew temporary keys this long before they expire (or at 3/4 of a short life)
HOP_LIMIT_HINT = (
    "from a bridged container the instance's metadata hop limit must be at least 2 "
    "(aws ec2 modify-instance-metadata-options --http-put-response-hop-limit 2)"
)

MakeTransport = Callable[[str, float], "Transport"]


def own(env: Mapping[str, str], name: str) -> str | None:
    """A variable of our own identity: set, not empty, and not a reference (that one is the child's)."""
    value = env.get(name)
    return value if value and not is_reference(value) else None


class Identity:
    """The chosen provider and its current keys, fetched again before temporary ones expire."""

    def __init__(self, fetch: Callable[[], Keys], described: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.described = described  # for messages: where the identity comes from
        self._clock = clock
        self._keys: Keys | None = None
        self._renew_at = 0.0

    def keys(self) -> Keys:
        now = self._clock()
        if self._keys is None or now >= self._renew_at:
            keys = self._fetch()
            for value in (keys.access_key, keys.secret_key, keys.token):
                if value:
                    log.protect(value)
            left = keys.expires_at - now
            self._renew_at = now + max(0.0, left - min(RENEW_BEFORE, left / 4))
            self._keys = keys
            if keys.token is not None:
                log.debug("AWS identity fetched", source=self.described)
        return self._keys

    @property
    def temporary(self) -> bool:
        return self._keys is not None and self._keys.token is not None

    def invalidate(self) -> None:
        """Fetch again before the next call (the server said the keys expired)."""
        self._keys = None


def pick_identity(
    env: Mapping[str, str],
    *,
    client: AwsClient,
    sts_region: str,
    make_transport: MakeTransport,
    clock: Callable[[], float] = time.monotonic,
) -> Identity:
    """The first provider of the chain whose variables are set, checked now (78 if unusable)."""
    access_key, secret_key = own(env, "AWS_ACCESS_KEY_ID"), own(env, "AWS_SECRET_ACCESS_KEY")
    if access_key or secret_key:
        if not (access_key and secret_key):
            given, missing = (
                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                if access_key
                else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
            )
            raise ConfigError(f"{given} is set without {missing}: set both, or neither")
        token = own(env, "AWS_SESSION_TOKEN")
        for name, value in (
            ("AWS_ACCESS_KEY_ID", access_key),
            ("AWS_SECRET_ACCESS_KEY", secret_key),
            ("AWS_SESSION_TOKEN", token),
        ):
            if value:
                check_static_credential(value, name)
        keys = Keys(access_key, secret_key, token, float("inf"))
        return Identity(lambda: keys, "AWS_ACCESS_KEY_ID", clock)
    role, token_file = own(env, "AWS_ROLE_ARN"), own(env, "AWS_WEB_IDENTITY_TOKEN_FILE")
    if role and token_file:
        read_secret_file(token_file, "AWS_WEB_IDENTITY_TOKEN_FILE")
        session = own(env, "AWS_ROLE_SESSION_NAME") or "stronghold-init"
        return Identity(
            lambda: _web_identity(client, sts_region, role, token_file, session, clock),
            "web identity (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE)",
            clock,
        )
    full, relative = own(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI"), own(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    if full or relative:
        return _container_identity(env, full, relative, make_transport, clock)
    profile_keys = shared_file_keys(env)
    if profile_keys is not None:
        keys, where = profile_keys
        return Identity(lambda: keys, where, clock)
    if (env.get("AWS_EC2_METADATA_DISABLED") or "").strip().lower() == "true":
        raise ConfigError(
            "no AWS identity: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_ROLE_ARN and "
            "AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_*, or AWS_PROFILE "
            "(instance metadata is off: AWS_EC2_METADATA_DISABLED=true)"
        )
    endpoint = (env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_ADDRESS).rstrip("/")
    _check_metadata_url(endpoint, IMDS_HOSTS, "AWS_EC2_METADATA_SERVICE_ENDPOINT")
    imds = Imds(make_transport(endpoint, METADATA_TIMEOUT), endpoint, clock)
    return Identity(imds.fetch, f"instance metadata (IMDSv2 at {endpoint})", clock)


def _temporary_keys(fields: Mapping[str, object], token_field: str, what: str, clock: Callable[[], float]) -> Keys:
    values = {}
    for name in ("AccessKeyId", "SecretAccessKey", token_field, "Expiration"):
        value = fields.get(name)
        if not isinstance(value, str) or not value or any(ord(c) < 32 for c in value):
            raise BrokenAnswerError(f"{what}: the answer has no usable {name}")
        values[name] = value
    for name in ("AccessKeyId", "SecretAccessKey", token_field):
        log.protect(values[name])
    left = remaining_seconds(values["Expiration"], what)
    if left <= 0:
        raise BrokenAnswerError(f"{what}: the credentials it gave have already expired (is the clock right?)")
    return Keys(values["AccessKeyId"], values["SecretAccessKey"], values[token_field], clock() + left)


def _web_identity(
    client: AwsClient, region: str, role: str, token_file: str, session: str, clock: Callable[[], float]
) -> Keys:
    jwt = read_secret_file(token_file, "AWS_WEB_IDENTITY_TOKEN_FILE")  # read each time: the kubelet rotates it
    fields = client.query_call(
        region,
        "AssumeRoleWithWebIdentity",
        [("RoleArn", role), ("RoleSessionName", session), ("WebIdentityToken", jwt)],
        None,  # unsigned: the token is the credential
        names="AWS_ROLE_ARN",
    )
    return _temporary_keys(fields, "SessionToken", "web identity (AssumeRoleWithWebIdentity)", clock)


def _check_metadata_url(url: str, allowed_hosts: frozenset[str], variable: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{variable} is not an http(s):// URL with a host")
    if parts.username or parts.password:
        raise ConfigError(f"{variable} must not carry a user name or password")
    if parts.scheme == "http" and parts.hostname not in allowed_hosts and not is_loopback(parts.hostname):
        raise ConfigError(
            f"{variable} uses plain http:// to {parts.hostname}, which is neither loopback nor the "
            f"metadata address ({', '.join(sorted(allowed_hosts))}); use https://"
        )


def _container_identity(
    env: Mapping[str, str],
    full: str | None,
    relative: str | None,
    make_transport: MakeTransport,
    clock: Callable[[], float],
) -> Identity:
    if full:
        variable, url = "AWS_CONTAINER_CREDENTIALS_FULL_URI", full
        _check_metadata_url(url, CONTAINER_HOSTS, variable)
    else:
        variable = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
        if not relative or not relative.startswith("/"):
            raise ConfigError(f"{variable} must be a path starting with /")
        url = ECS_ADDRESS + relative
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    token_file = own(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    token = own(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN")
    if token_file:
        read_secret_file(token_file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    elif token:
        check_static_credential(token, "AWS_CONTAINER_AUTHORIZATION_TOKEN")
    transport = make_transport(base, METADATA_TIMEOUT)

    def fetch() -> Keys:
        headers = {}
        if token_file:  # read each time: EKS Pod Identity rotates it
            headers["Authorization"] = read_secret_file(token_file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
        elif token:
            headers["Authorization"] = token
        answer = transport.request("GET", path, headers=headers)
        what = f"container credentials ({variable})"
        _metadata_status(answer, what)
        return _temporary_keys(_json_object(answer, what), "Token", what, clock)

    return Identity(fetch, f"container credentials ({variable})", clock)


def _metadata_status(answer: Response, what: str) -> None:
    if answer.status == 200:
        return
    if answer.status in (401, 403):
        raise RefusedError(f"{what}: the endpoint refused the authorization token ({answer.status})")
    if answer.status == 404:
        raise NotFoundError(f"{what}: nothing there (404)")
    raise TransientError(f"{what}: answered {answer.status}", retry_after=answer.retry_after)


def _json_object(answer: Response, what: str) -> dict:
    try:
        data = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        raise BrokenAnswerError(f"{what}: the answer is not JSON") from None
    if not isinstance(data, dict):
        raise BrokenAnswerError(f"{what}: the answer is not a JSON object")
    return data


class Imds:
    """IMDSv2: a session token by PUT, then the instance role's credentials with it."""

    def __init__(self, transport: Transport, endpoint: str, clock: Callable[[], float]) -> None:
        self._transport = transport
        self._endpoint = endpoint
        self._clock = clock
        self._token: str | None = None
        self._token_until = 0.0

    def _request(self, method: str, path: str, headers: dict[str, str]) -> Response:
        try:
            return self._transport.request(method, path, headers=headers)
        except TransientError as exc:
            raise TransientError(f"instance metadata at {self._endpoint}: {exc.message}; {HOP_LIMIT_HINT}") from None

    def _session_token(self) -> str:
        if self._token is None or self._clock() >= self._token_until:
            answer = self._request(
                "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": str(IMDS_TOKEN_TTL)}
            )
            _metadata_status(answer, "instance metadata token (PUT /latest/api/token)")
            token = answer.body.decode("ascii", "replace").strip()
            if not token or len(token) > 4096 or not token.isprintable():
                raise BrokenAnswerError("instance metadata token: the answer is not a token")
            log.protect(token)
            self._token, self._token_until = token, self._clock() + IMDS_TOKEN_TTL - 60
        return self._token

    def _get(self, path: str, what: str) -> Response:
        for attempt in (1, 2):
            answer = self._request("GET", path, {"X-aws-ec2-metadata-token": self._session_token()})
            if answer.status == 401 and attempt == 1:
                self._token = None  # the token expired or the server restarted: one more, with a new one
                continue
            _metadata_status(answer, what)
            return answer
        raise AssertionError("unreachable")

    def fetch(self) -> Keys:
        base = "/latest/meta-data/iam/security-credentials/"
        try:
            listing = self._get(base, "instance metadata (the instance's role)")
        except NotFoundError:
            raise ConfigError("instance metadata: this instance has no IAM role (instance profile)") from None
        role = listing.body.decode("utf-8", "replace").strip().split("\n", 1)[0].strip()
        if not role or len(role) > 128 or not all(c.isalnum() or c in "+=,.@_-" for c in role):
            raise BrokenAnswerError("instance metadata: the role listing is not a role name")
        answer = self._get(base + role, f"instance metadata (role {role})")
        what = f"instance metadata (role {role})"
        data = _json_object(answer, what)
        if data.get("Code", "Success") != "Success":
            raise TransientError(f"{what}: Code is not Success")
        return _temporary_keys(data, "Token", what, self._clock)


def shared_file_keys(env: Mapping[str, str]) -> tuple[Keys, str] | None:
    """The static keys of AWS_PROFILE (else `default`) in the shared files, or None when there are none.

    An AWS_PROFILE that is named but missing, or holds no static keys, is a
    configuration error (78).  A file with the keys must be readable by its owner only.
    """
    home = env.get("HOME") or os.path.expanduser("~")
    credentials_file = env.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials")
    config_file = env.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config")
    named = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE")
    profile = named or "default"
    for path, section in (
        (credentials_file, profile),
        (config_file, profile if profile == "default" else f"profile {profile}"),
    ):
        values = read_profile(path, section)
        if values is None:
            continue
        access_key, secret_key = values.get("aws_access_key_id"), values.get("aws_secret_access_key")
        if access_key and secret_key:
            _check_private(path)
            token = values.get("aws_session_token") or None
            for name, value in (
                ("aws_access_key_id", access_key),
                ("aws_secret_access_key", secret_key),
                ("aws_session_token", token),
            ):
                if value:
                    check_static_credential(value, f"{path}: [{section}] {name}")
            return Keys(access_key, secret_key, token, float("inf")), f"profile {profile} in {path}"
        if named:
            kinds = [k for k in ("role_arn", "sso_session", "sso_start_url", "credential_process") if k in values]
            if kinds:
                raise ConfigError(
                    f"AWS_PROFILE {profile} in {path} uses {kinds[0]}: only static keys are supported; "
                    "use web identity, container credentials or instance metadata instead"
                )
    if named:
        raise ConfigError(f"AWS_PROFILE {profile}: no static keys for it in {credentials_file} or {config_file}")
    return None


def read_profile(path: str, section: str) -> dict[str, str] | None:
    """One section of an INI file (CRLF endings too), or None when the file or section is missing."""
    try:
        with open(path, encoding="utf-8", newline=None) as handle:
            text = handle.read(1024 * 1024 + 1)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"{path}: cannot read it ({reason})") from None
    if len(text) > 1024 * 1024:
        raise ConfigError(f"{path}: over 1 MiB, not an AWS shared file")
    return parse_ini(text, path).get(section)


def parse_ini(text: str, path: str) -> dict[str, dict[str, str]]:
    """The sections of an AWS shared file: `[name]`, `key = value`, `#`/`;` comments, CRLF too.

    Not configparser: the AWS files are this simple, and the Python-free bundle
    leaves configparser out (scripts/build-bundle).  Indented lines continue a
    nested setting (`s3 =` blocks) and are skipped; an error names only the line
    number, since a line may hold a key.
    """
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if line[:1].isspace() and current is not None:
            continue  # a nested value's continuation
        if stripped.startswith("["):
            if not stripped.endswith("]") or len(stripped) < 3:
                raise ConfigError(f"{path}: not an AWS shared file (line {number})")
            current = sections.setdefault(" ".join(stripped[1:-1].split()), {})
            continue
        key, equals, value = stripped.partition("=")
        if not equals or current is None:
            raise ConfigError(f"{path}: not an AWS shared file (line {number})")
        current[key.strip().lower()] = value.strip()
    return sections


def region_from_profile(env: Mapping[str, str]) -> str | None:
    home = env.get("HOME") or os.path.expanduser("~")
    config_file = env.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config")
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    values = read_profile(config_file, profile if profile == "default" else f"profile {profile}")
    return (values or {}).get("region") or None


def _check_private(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} holds keys but is open to others (mode {stat.S_IMODE(mode):04o}); chmod 600 it")
