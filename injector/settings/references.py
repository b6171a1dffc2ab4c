"""Parse references (README: References; README: OpenBao and Vault).  Pure: no I/O.

    stronghold://<secret>[?scope=a,b&ttl=15m]     the credential proxy
    vault://<api-path>[?ttl=15m]#<field>          a field read from OpenBao/Vault
    vault-token://?policies=a,b[&ttl=15m][&default_policy=true]
                                                  a token minted for the app
    aws-sm://, aws-ssm://, aws-sts://             AWS (settings/aws_references.py parses them)

A reference is any variable whose value starts with a known scheme.  The
variable's name decides the delivery: `NAME` goes to the child's environment,
`NAME_FILE` to the file `<dir>/NAME`.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Mapping

from injector.errors import ConfigError

STRONGHOLD_SCHEME = "stronghold://"
VAULT_SCHEME = "vault://"
VAULT_TOKEN_SCHEME = "vault-token://"
AWS_SCHEMES = ("aws-sm://", "aws-ssm://", "aws-sts://")
SCHEMES = (STRONGHOLD_SCHEME, VAULT_SCHEME, VAULT_TOKEN_SCHEME, *AWS_SCHEMES)
# Configuration, never references, and never passed to the child: ours, and
# OpenBao's and Vault's (their tokens, role and secret ids are credentials).
CONFIG_PREFIXES = ("STRONGHOLD_", "BAO_", "VAULT_")
# ...except these, which the child gets (README: OpenBao and Vault): an address, a CA and
# a namespace are not secrets, and a minted vault-token:// is useless without them.
CHILD_PASSTHROUGH = frozenset(
    {"BAO_ADDR", "VAULT_ADDR", "BAO_CACERT", "VAULT_CACERT", "BAO_NAMESPACE", "VAULT_NAMESPACE"}
)
# stronghold-init's own AWS identity (SPEC 12): never inherited by the child, unless the
# variable is itself a reference (then the child gets the issued value instead).
AWS_IDENTITY_VARIABLES = frozenset(
    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}
)
AWS_IDENTITY_PREFIXES = ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_CREDENTIALS_")
FILE_SUFFIX = "_FILE"
# What a slip of the keyboard makes of a scheme (README: References): caught, never passed on.
_SCHEME_LIKE = re.compile(r"([A-Za-z][A-Za-z0-9+._-]{0,30}):(/*)")
_RIGHT_SCHEMES = {
    "stronghold": STRONGHOLD_SCHEME,
    "vault": VAULT_SCHEME,
    "vault-token": VAULT_TOKEN_SCHEME,
    "aws-sm": "aws-sm://",
    "aws-ssm": "aws-ssm://",
    "aws-sts": "aws-sts://",
}

_SECRET = re.compile(r"[A-Za-z0-9._/-]+")
_SCOPE = re.compile(r"[A-Za-z0-9._:/*+-]+")
_FIELD = re.compile(r"[A-Za-z0-9._-]+")
_POLICY = re.compile(r"[A-Za-z0-9._-]+")
# The file name under --dir comes from the variable's name, so it must be a
# plain name: no path separators, nothing hidden (.ready lives there too).
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DURATION = re.compile(r"([0-9]{1,9})([smh]?)")
# A file name and its temporary twin (`.<name>.<12 hex>.tmp`) must fit in NAME_MAX (255).
MAX_FILE_NAME = 200
# A granted ttl beyond ten years is taken as ten years: `now + ttl` stays a
# finite float (10**400 would raise OverflowError) and refresh still happens.
MAX_TTL = 10 * 365 * 24 * 3600
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}

# Value types are namedtuples rather than dataclasses: importing dataclasses
# (and inspect, which it pulls in) costs ~9 ms that every start would pay.


class Reference(
    namedtuple(
        "Reference",
        "name secret scopes ttl scheme field default_policy origin extra",
        defaults=((), None, "stronghold", None, False, None, ()),
    )
):
    """One declared credential: where it comes from and where it goes.

    name: the declared variable, e.g. STRIPE_KEY or DB_PASSWORD_FILE
    secret: the secret's path (for vault://, the API path; "" for vault-token://)
    scopes: tuple of scopes (for vault-token://, the policies); ttl: seconds asked for, or None
    scheme: "stronghold", "vault" or "vault-token"; field: the field to take (vault:// only)
    default_policy: vault-token:// only, whether the token also gets OpenBao's `default` policy
    origin: the --env-file the variable came from, or None (for error messages)
    extra: further options as (key, value) pairs (aws-sm:// version-stage, aws-ssm:// version, ...)
    """

    __slots__ = ()

    @property
    def is_file(self) -> bool:
        return self.name.endswith(FILE_SUFFIX)

    @property
    def target(self) -> str:
        """The environment variable (env delivery) or file name (file delivery)."""
        return self.name[: -len(FILE_SUFFIX)] if self.is_file else self.name

    @property
    def uri(self) -> str:
        """Where it comes from, without options: safe to show (it names a secret, never holds one)."""
        if self.scheme == "vault":
            return f"vault://{self.secret}#{self.field}"
        if self.scheme == "vault-token":
            extra = "&default_policy=true" if self.default_policy else ""
            return f"vault-token://?policies={','.join(self.scopes)}{extra}"
        if self.scheme.startswith("aws-"):
            fragment = f"#{self.field}" if self.field else ""
            return f"{self.scheme}://{self.secret}{fragment}"
        return f"stronghold://{self.secret}"

    @property
    def described(self) -> str:
        """`NAME (set in FILE)`: the variable, and where to find it."""
        return f"{self.name} (set in {self.origin})" if self.origin else self.name


def is_reference(value: str) -> bool:
    return value.startswith(SCHEMES)


def is_config_variable(name: str) -> bool:
    return name.startswith(CONFIG_PREFIXES)


def passes_to_child(name: str) -> bool:
    """Whether a variable of stronghold-init's own environment reaches the child."""
    if name in AWS_IDENTITY_VARIABLES or name.startswith(AWS_IDENTITY_PREFIXES):
        return False  # (a reference in one of them is put back by delivery.child_environment)
    return not is_config_variable(name) or name in CHILD_PASSTHROUGH


def misspelt_scheme(value: str) -> str | None:
    """The scheme a look-alike value meant (`stronghold://`, ...), or None.

    `stronghold:/x`, `Stronghold://x`, `strongold://x`, `vault:/x`: a scheme
    within a typo of ours, or ours with the wrong case or slashes.  Only the
    scheme is looked at, so an unrelated URL (`https://`, `postgres://`) never is.
    """
    match = _SCHEME_LIKE.match(value)
    if not match:
        return None
    scheme, slashes = match.group(1), match.group(2)
    lowered = scheme.lower()
    after = value[match.end() : match.end() + 1]
    if not slashes and (not after or after.isspace()):
        return None  # `Vault: the big one` is prose, not a URL
    if lowered in _RIGHT_SCHEMES:
        # vault-token:// has no host part, but `vault-token:?...` is still a slip
        return _RIGHT_SCHEMES[lowered] if (scheme != lowered or slashes != "//") else None
    if not slashes:
        return None  # `name:value` is ordinary text, not a URL
    for right, spelled in _RIGHT_SCHEMES.items():
        # Short schemes allow one slip: two would catch unrelated schemes (aws-sm is two from `aws-s`).
        if _edit_distance(lowered, right, limit=2) <= (1 if right == "vault" or right.startswith("aws-") else 2):
            return spelled
    return None


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance (adjacent swaps count one), giving up past `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


def parse_duration(text: str) -> int:
    """`900`, `90s`, `15m`, `2h` -> seconds (a positive integer)."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"bad duration {text!r} (use seconds, or a number with s, m or h)")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"bad duration {text!r} (must be more than zero)")
    return seconds


def parse_reference(name: str, value: str) -> Reference:
    """Parse one reference value declared as variable `name`."""
    try:
        _check_target(name)
        for scheme, parse in (
            (STRONGHOLD_SCHEME, _parse_stronghold),
            (VAULT_SCHEME, _parse_vault),
            (VAULT_TOKEN_SCHEME, _parse_vault_token),
        ):
            if value.startswith(scheme):
                return parse(name, value[len(scheme) :])
        if value.startswith(AWS_SCHEMES):
            from injector.settings.aws_references import parse_aws

            parsed = parse_aws(name, value)
            if parsed is not None:
                return parsed
        raise ValueError("not a reference")
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _parse_stronghold(name: str, body: str) -> Reference:
    if "#" in body:
        raise ValueError("stronghold:// references take no #fragment")
    secret, _, query = body.partition("?")
    _check_secret(secret)
    items = parse_query(query, ("scope", "ttl"))
    scopes = _parse_list(items["scope"], _SCOPE, "scope") if "scope" in items else ()
    ttl = parse_duration(items["ttl"]) if "ttl" in items else None
    return Reference(name=name, secret=secret, scopes=scopes, ttl=ttl)


def _parse_vault(name: str, body: str) -> Reference:
    rest, hashmark, field_name = body.partition("#")
    if not hashmark or not field_name:
        raise ValueError(
            "a vault:// reference needs the field to take after #: write vault://<path>#<field>, "
            "e.g. vault://secret/data/app#STRIPE_KEY"
        )
    if not _FIELD.fullmatch(field_name):
        raise ValueError("the #field may hold only A-Z a-z 0-9 . _ -")
    path, _, query = rest.partition("?")
    _check_secret(path)
    items = parse_query(query, ("ttl",))
    ttl = parse_duration(items["ttl"]) if "ttl" in items else None
    return Reference(name=name, secret=path, ttl=ttl, scheme="vault", field=field_name)


def _parse_vault_token(name: str, body: str) -> Reference:
    if not body.startswith("?"):
        raise ValueError("vault-token:// takes only a query: vault-token://?policies=a,b&ttl=15m")
    items = parse_query(body[1:], ("policies", "ttl", "default_policy"))
    if "policies" not in items:
        raise ValueError("vault-token:// needs policies=<p1>,<p2>")
    policies = _parse_list(items["policies"], _POLICY, "policy")
    ttl = parse_duration(items["ttl"]) if "ttl" in items else None
    default_policy = items.get("default_policy", "false")
    if default_policy not in ("true", "false"):
        raise ValueError("default_policy must be true or false")
    return Reference(
        name=name, secret="", scopes=policies, ttl=ttl, scheme="vault-token", default_policy=default_policy == "true"
    )


def parse_query(query: str, known: tuple[str, ...]) -> dict[str, str]:
    items: dict[str, str] = {}
    for item in query.split("&") if query else ():
        key, equals, raw = item.partition("=")
        if not equals:
            raise ValueError(f"query item {key!r} has no value")
        if key in items:
            raise ValueError(f"query key {key!r} given twice")
        if key not in known:
            raise ValueError(f"unknown query key {key!r} (known: {', '.join(known)})")
        items[key] = raw
    return items


def _parse_list(raw: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    items = tuple(raw.split(","))
    for item in items:
        if not pattern.fullmatch(item):
            raise ValueError(f"bad {what} {item!r}")
    return items


def _check_secret(secret: str) -> None:
    if not secret:
        raise ValueError("empty secret name")
    if not _SECRET.fullmatch(secret):
        raise ValueError("secret name may hold only A-Z a-z 0-9 . _ / -")
    if secret.startswith("/") or secret.endswith("/"):
        raise ValueError("secret name must not start or end with /")


def _check_target(name: str) -> None:
    if name.endswith(FILE_SUFFIX) and not _FILE_NAME.fullmatch(name[: -len(FILE_SUFFIX)]):
        raise ValueError("a _FILE reference needs a plain name before _FILE")
    if name.endswith(FILE_SUFFIX) and len(name) - len(FILE_SUFFIX) > MAX_FILE_NAME:
        raise ValueError(f"the file name before _FILE is longer than {MAX_FILE_NAME} characters")


def granted_ttl(value: int) -> int:
    """A validated, non-negative ttl from an answer, capped at MAX_TTL."""
    return min(value, MAX_TTL)


def value_problem(value: object) -> str | None:
    """Why an issued value must not be delivered, or None (docs/protocol.md)."""
    if not isinstance(value, str) or not value:
        return "is not a non-empty string"
    if "\0" in value:
        return "holds NUL"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (a lone surrogate)"
    return None


def collect_references(environ: Mapping[str, str], origins: Mapping[str, str] | None = None) -> list[Reference]:
    """Every reference in `environ`, sorted by name.

    `origins` maps a variable to the file it was loaded from, so an error can
    say where to look.  Configuration variables are never references.
    """
    origins = origins or {}
    references = []
    for name in sorted(environ):
        value = environ[name]
        if is_config_variable(name):
            continue
        where = origins.get(name)
        if not is_reference(value):
            meant = misspelt_scheme(value)
            if meant is not None:
                # Only the scheme is echoed: the rest of the value could be anything.
                scheme = value[: value.index(":") + 1]
                raise ConfigError(
                    f"{name}: {scheme!r}... looks like a misspelt reference; write {meant}..."
                    + (f" (in {where})" if where else "")
                )
            continue
        try:
            references.append(parse_reference(name, value)._replace(origin=where))
        except ConfigError as exc:
            raise ConfigError(f"{exc.message} (in {where})" if where else exc.message) from None
    _check_no_conflicts(references, environ)
    return references


def _check_no_conflicts(references: list[Reference], environ: Mapping[str, str]) -> None:
    for reference in references:
        twin = reference.target if reference.is_file else reference.name + FILE_SUFFIX
        if twin in environ:
            env_name, file_name = (twin, reference.name) if reference.is_file else (reference.name, twin)
            raise ConfigError(f"{env_name} and {file_name} are both set; set only one of them")


class Credential(namedtuple("Credential", "name value ttl issued_at lease_id", defaults=(None,))):
    """A token issued for one reference.  `repr` never shows the value.

    name: the reference's declared variable; value: the token;
    ttl: seconds granted, counted from issued_at (time.monotonic() when the
    request was sent), or None for a static value that never expires (a KV
    secret, or a lease or token a server grants with ttl 0), which is re-read
    on a poll instead (sources turn a 0 into None: one meaning); lease_id: the lease, or None
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Credential(name={self.name!r}, ttl={self.ttl!r}, lease_id={self.lease_id!r})"

    @property
    def expires_at(self) -> float:
        return float("inf") if self.ttl is None else self.issued_at + self.ttl
