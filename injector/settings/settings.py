"""Settings from flags and STRONGHOLD_* variables, checked before any request.

Each setting has an environment variable and, mostly, a flag; the flag wins.
Pure apart from reading the env files the user named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from injector.errors import ConfigError
from injector.netaddr import is_loopback
from injector.settings.actions import parse_on_rotate, parse_remap_exit, parse_rewrite_signal
from injector.settings.options import BY_DEST, ENV_TWINS, VAULT_AUTH_METHODS

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not loaded on the start path: annotations only
    from typing import TypeVar

    T = TypeVar("T")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.settings.actions import RotateAction
    from injector.settings.options import Option


class Settings:
    """Everything the run needs besides the references themselves.

    Every setting of the options table (settings/options.py) starts at that
    table's default: the table is the only place a default is written.  The
    OpenBao settings that are variables only (several names each) and what
    the run derives are declared here.
    """

    # From the options table (defaults there; SETTING_OF names the three whose setting is not the option's dest)
    proxy_url: str | None
    bootstrap_token_file: str | None
    bootstrap_token: str | None
    auth: str
    k8s_token_file: str
    role: str | None
    dir: str
    ca_bundle: str | None
    client_cert: str | None
    client_key: str | None
    user: str | None
    file_group: str | None
    log_format: str
    log_level: str
    startup_timeout: float
    insecure_http: bool
    allow_disk: bool
    remove_bootstrap_token_file: bool
    mask_output: bool
    no_refresh: bool
    on_rotate: RotateAction | None  # None: the default that follows from the references
    on_expiry: str
    grace: float
    signal_group: bool  # forward to the command's whole process group (dumb-init's setsid mode)
    rewrite_signals: tuple[tuple[int, int], ...]  # (received, sent instead; 0 drops it)
    remap_exit: tuple[tuple[int, int], ...]  # (command's exit code, ours instead)
    templates: tuple[str, ...]  # --template SRC:DEST as given (parsed by settings/templates.py)
    vault_poll: float  # --static-poll (--vault-poll): every source's static values
    vault_remove_secret_id_file: bool
    # Derived, or not in the table
    dir_given: bool = False
    health_listen: str | None = None  # the sidecar's --health-listen (a flag of that subcommand only)
    # OpenBao / Vault variables (docs/openbao.md), read by _vault_settings
    vault_addrs: tuple[str, ...] = ()
    vault_token_file: str | None = None
    vault_token: str | None = None
    vault_auth: str = "token"
    vault_role_id: str | None = None
    vault_secret_id_file: str | None = None
    vault_jwt_file: str | None = None
    vault_role: str | None = None
    vault_auth_mount: str | None = None
    vault_namespace: str | None = None
    aws_env: dict[str, str]  # the AWS_* variables (and HOME) after --env-file, for sources/aws
    env_origins: dict[str, str]  # variable -> the --env-file it was loaded from
    # setting -> the flag or variable it was taken from (e.g. "proxy" ->
    # "STRONGHOLD_PROXY_URL"), for error messages and the env-file rule
    origins: dict[str, str]

    def __init__(self) -> None:
        for option in SETTINGS_OPTIONS:
            setattr(self, SETTING_OF.get(option.dest, option.dest), _default(option))
        self.origins = {}
        self.env_origins = {}
        self.aws_env = {}

    def origin(self, setting: str, default: str) -> str:
        return self.origins.get(setting, default)


# An option's dest -> the Settings attribute it fills, where the two names differ.
SETTING_OF = {"proxy": "proxy_url", "rewrite_signal": "rewrite_signals", "template": "templates"}
# Options that are not settings: cli loads the env files before any setting is read.
SETTINGS_OPTIONS = tuple(o for o in BY_DEST.values() if o.dest != "env_file")
# Repeatable options: how each item is read (--template's SRC:DEST is parsed later, by settings/templates.py).
PARSE_EACH: dict[str, Callable[[str], object]] = {
    "append": str,
    "rewrite_signal": parse_rewrite_signal,
    "remap_exit": parse_remap_exit,
}
REPEATED = tuple(PARSE_EACH)


def _default(option: Option) -> object:
    """A setting's value when neither its flag nor its twin is given: the table's default."""
    if option.kind == "switch":
        return False
    if option.kind in REPEATED:
        return ()
    return option.default


def _pick(
    options: Mapping[str, object], environ: Mapping[str, str], key: str, origins: dict[str, str] | None = None
) -> str | None:
    """The flag's value, else its environment twin's; `origins[key]` records which."""
    value = options.get(key)
    if value is not None:
        if origins is not None:
            origins[key] = "--" + key.replace("_", "-")
        return str(value)
    env_name = ENV_TWINS.get(key)
    found = environ.get(env_name) or None if env_name else None
    if found is not None and origins is not None and env_name:
        origins[key] = env_name
    return found


def _choice(value: str | None, allowed: tuple[str, ...] | list[str], what: str) -> str | None:
    if value is not None and value not in allowed:
        raise ConfigError(f"{what}: {value!r} is not one of {', '.join(allowed)}")
    return value


def build_settings(options: Mapping[str, object], environ: Mapping[str, str]) -> Settings:
    """Merge parsed flags (`options`, None for absent) with the environment, row by row of the options table."""
    settings = Settings()
    for option in SETTINGS_OPTIONS:
        value = _read(option, options, environ, settings.origins)
        if value is not None:
            setattr(settings, SETTING_OF.get(option.dest, option.dest), value)
    settings.dir_given = "dir" in settings.origins
    if settings.mask_output and settings.no_refresh:
        raise ConfigError("--mask-output keeps stronghold-init in the output path; it cannot go with --no-refresh")
    if options.get("health_listen") is not None:
        settings.health_listen = str(options["health_listen"])
    _vault_settings(settings, environ)
    settings.aws_env = {k: v for k, v in environ.items() if k.startswith("AWS_") or k == "HOME"}
    return settings


def _read(option: Option, options: Mapping[str, object], environ: Mapping[str, str], origins: dict[str, str]) -> object:
    """One row's value from its flag, else its twin (None: neither given, the default stands), by the row's kind."""
    key, kind = option.dest, option.kind
    if kind == "switch":
        return bool(options.get(key)) or _switch(environ, option.env)
    if kind == "choice":
        return _choice(_pick(options, environ, key, origins), option.choices, option.env or option.flag)
    if kind == "seconds":
        seconds = options.get(key)
        if isinstance(seconds, (int, float)):  # argparse's _seconds made it a number
            return float(seconds)
        text = _twin(environ, key)
        return None if text is None else _twin_value(parse_seconds, text, key)
    if kind == "duration":
        return _static_poll(options, environ)
    if kind in REPEATED:  # the flag repeated, or its twin's comma-separated items, each parsed
        return _list_setting(options, environ, key, PARSE_EACH[kind])
    if kind == "on_rotate":
        if options.get(key) is not None:
            return options[key]
        text = _twin(environ, key)
        return None if text is None else _twin_value(parse_on_rotate, text, key)
    return _pick(options, environ, key, origins)  # text


def _twin(environ: Mapping[str, str], key: str) -> str | None:
    """The value of `key`'s environment twin, or None when unset or empty."""
    name = ENV_TWINS.get(key)
    return (environ.get(name) or None) if name else None


def _twin_value(parse: Callable[[str], T], text: str, key: str) -> T:
    """`parse(text)` for a twin's value; its ValueError becomes a 78 naming the variable."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(f"{ENV_TWINS[key]}: {exc}") from None


def parse_seconds(text: str) -> float:
    """A number of seconds, 0 or more (as the flags take them)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):  # also refuses nan
        raise ValueError(f"{text!r} is not a number of seconds (0 or more, e.g. 10 or 2.5)")
    return value


def _switch(environ: Mapping[str, str], name: str | None) -> bool:
    """A switch's twin: 1/true/yes/on or 0/false/no/off (unset or empty: off); anything else is 78."""
    text = (environ.get(name) or "").strip().lower() if name else ""
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}: {text!r} is not a switch value (use 1, true, yes, on or 0, false, no, off)")


def _list_setting(
    options: Mapping[str, object], environ: Mapping[str, str], key: str, parse: Callable[[str], T]
) -> tuple[T, ...]:
    """A repeatable flag's values, else its twin's comma-separated items."""
    given = options.get(key)
    if given:
        return tuple(given)  # type: ignore[arg-type]
    text = _twin(environ, key)
    if text is None:
        return ()
    return tuple(_twin_value(parse, item.strip(), key) for item in text.split(",") if item.strip())


def _first(environ: Mapping[str, str], *names: str, origins: dict[str, str] | None = None, key: str = "") -> str | None:
    """The first of `names` that is set; `origins[key]` records which."""
    for name in names:
        if environ.get(name):
            if origins is not None:
                origins[key] = name
            return environ[name]
    return None


def _vault_settings(settings: Settings, environ: Mapping[str, str]) -> None:
    """The OpenBao / Vault settings that are variables only, several names each (docs/openbao.md)."""
    origins = settings.origins
    addrs = _first(environ, "STRONGHOLD_VAULT_ADDR", "BAO_ADDR", "VAULT_ADDR", origins=origins, key="vault_addrs")
    settings.vault_addrs = tuple(a.strip() for a in addrs.split(",") if a.strip()) if addrs else ()
    settings.vault_token_file = environ.get("STRONGHOLD_VAULT_TOKEN_FILE") or None
    if settings.vault_token_file:
        origins["vault_token_file"] = "STRONGHOLD_VAULT_TOKEN_FILE"
    settings.vault_token = _first(
        environ, "STRONGHOLD_VAULT_TOKEN", "BAO_TOKEN", "VAULT_TOKEN", origins=origins, key="vault_token"
    )
    auth = _choice(environ.get("STRONGHOLD_VAULT_AUTH") or None, VAULT_AUTH_METHODS, "STRONGHOLD_VAULT_AUTH")
    settings.vault_auth = auth or "token"
    settings.vault_role_id = environ.get("STRONGHOLD_VAULT_ROLE_ID") or None
    settings.vault_secret_id_file = environ.get("STRONGHOLD_VAULT_SECRET_ID_FILE") or None
    if settings.vault_secret_id_file:
        origins["vault_secret_id_file"] = "STRONGHOLD_VAULT_SECRET_ID_FILE"
    settings.vault_jwt_file = environ.get("STRONGHOLD_VAULT_JWT_FILE") or None
    if settings.vault_jwt_file:
        origins["vault_jwt_file"] = "STRONGHOLD_VAULT_JWT_FILE"
    settings.vault_role = environ.get("STRONGHOLD_VAULT_ROLE") or None
    settings.vault_auth_mount = environ.get("STRONGHOLD_VAULT_AUTH_MOUNT") or None
    settings.vault_namespace = environ.get("STRONGHOLD_VAULT_NAMESPACE") or None


def _static_poll(options: Mapping[str, object], environ: Mapping[str, str]) -> float | None:
    """--static-poll (or --vault-poll), else STRONGHOLD_STATIC_POLL, else its older name STRONGHOLD_VAULT_POLL."""
    poll = options.get("vault_poll") or environ.get("STRONGHOLD_STATIC_POLL") or environ.get("STRONGHOLD_VAULT_POLL")
    if not poll:
        return None
    from injector.settings.references import parse_duration

    try:
        return float(parse_duration(str(poll)))
    except ValueError as exc:
        raise ConfigError(f"--static-poll: {exc}") from None


def check_proxy_url(url: str, *, insecure_http: bool, what: str = "proxy URL") -> str:
    """Return the URL without a trailing slash, or refuse it (README: Configuration).

    Plain HTTP is allowed only to a loopback host: anything else would send the
    bootstrap token and every credential in clear text.
    """
    # The URL itself is never echoed: it could carry a user:password@.
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} is not an http(s):// URL with a host")
    if parts.username or parts.password:
        raise ConfigError(f"{what} must not carry a user name or password")
    if parts.query or parts.fragment:
        raise ConfigError(f"{what} must not carry a query or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{what} has a bad port") from None
    if parts.scheme == "http" and not insecure_http and not is_loopback(parts.hostname):
        raise ConfigError(
            f"{what} uses plain http:// to {parts.hostname}, which is not loopback; "
            "use https:// (or --insecure-http if you really mean it)"
        )
    return url.rstrip("/")


# source -> (the setting holding its address, that setting's usual variable)
ADDRESS_SETTING = {"proxy": ("proxy", "STRONGHOLD_PROXY_URL"), "vault": ("vault_addrs", "STRONGHOLD_VAULT_ADDR")}


def check_env_file_addresses(settings: Settings, source: str, sent: list[str]) -> None:
    """A credential from the real environment (or a flag, or the default
    service-account path) is never sent to an address that came from an env
    file (README: References): a project's `.env` must not be able to point the
    developer's own VAULT_TOKEN at a server of its choosing.

    `sent`: the settings whose credential this source will send (for the
    auth method in use); `source`: "proxy" or "vault".
    """
    env_origins = settings.env_origins
    setting, default_name = ADDRESS_SETTING[source]
    address_variable = settings.origin(setting, default_name)
    env_file = env_origins.get(address_variable)
    if env_file is None:
        return  # the address is the user's own (environment or flag)
    for credential in sent:
        variable = settings.origins.get(credential)
        if variable is None and credential == "k8s_token_file":
            variable = "STRONGHOLD_K8S_TOKEN_FILE"  # the default path: the pod's own token
        if variable is None or variable in env_origins:
            continue  # not set, or from an env file too (the project's own dev setup)
        raise ConfigError(
            f"{address_variable} comes from the env file {env_file} but {variable} comes from your environment: "
            f"a credential from the environment is never sent to an address from an env file; set "
            f"{address_variable} in the environment (or with a flag), or keep {variable} out of it"
        )
