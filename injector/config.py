"""Settings from flags and STRONGHOLD_* variables, and --env-file loading.

Each setting has an environment variable and, mostly, a flag; the flag wins.
Pure apart from reading the env files the user named.
"""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from urllib.parse import urlsplit

from injector.errors import ConfigError
from injector.options import (
    BY_DEST,
    DEFAULT_DIR,
    DEFAULT_GRACE,
    DEFAULT_K8S_TOKEN_FILE,
    DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_VAULT_POLL,
    ENV_TWINS,
    VAULT_AUTH_METHODS,
)
from injector.process.signal_names import parse_signal, signal_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not loaded on the start path: annotations only
    from typing import TypeVar

    T = TypeVar("T")


class RotateAction(namedtuple("RotateAction", "kind signal", defaults=(0,))):
    """What happens to the child when a credential rotates (--on-rotate).

    kind: "restart", "signal" or "none"; signal: the signal number for "signal"
    """

    __slots__ = ()

    def __str__(self) -> str:
        if self.kind == "signal":
            return f"signal:{signal_name(self.signal)}"
        return self.kind


def parse_on_rotate(text: str) -> RotateAction:
    if text in ("restart", "none"):
        return RotateAction(text)
    if text.startswith("signal:"):
        return RotateAction("signal", parse_signal(text[len("signal:") :]))  # the one parser: 1, HUP, RTMIN+3
    raise ValueError(f"bad --on-rotate {text!r} (use restart, none or signal:NAME)")


def parse_rewrite_signal(text: str) -> tuple[int, int]:
    """--rewrite-signal FROM:TO (dumb-init's -r): TO 0 drops FROM instead of forwarding it."""
    import signal

    source, sep, target = text.partition(":")
    if not sep:
        raise ValueError(f"bad --rewrite-signal {text!r} (use FROM:TO, e.g. TERM:QUIT)")
    frm = parse_signal(source)
    if frm in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        raise ValueError(f"--rewrite-signal: {source} cannot be caught or forwarded, so it cannot be rewritten")
    to = 0 if target.strip() == "0" else parse_signal(target)
    return frm, to


def parse_remap_exit(text: str) -> tuple[int, int]:
    """--remap-exit CODE:CODE (tini's -e, generalised): the command's exit code FROM becomes TO."""
    source, sep, target = text.partition(":")
    try:
        frm, to = int(source), int(target)
    except ValueError:
        frm = to = -1
    if not sep or not 0 <= frm <= 255 or not 0 <= to <= 255:
        raise ValueError(f"bad --remap-exit {text!r} (use CODE:CODE, each 0-255, e.g. 143:0)")
    return frm, to


class Settings:
    """Everything the run needs besides the references themselves.

    The class attributes are the defaults; `build_settings` sets what was given.
    """

    proxy_url: str | None = None
    bootstrap_token_file: str | None = None
    bootstrap_token: str | None = None
    auth: str = "bootstrap_token"
    k8s_token_file: str = DEFAULT_K8S_TOKEN_FILE
    role: str | None = None
    dir: str = DEFAULT_DIR
    dir_given: bool = False
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    user: str | None = None
    file_group: str | None = None
    log_format: str = "text"
    log_level: str = "info"
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    insecure_http: bool = False
    allow_disk: bool = False
    remove_bootstrap_token_file: bool = False
    mask_output: bool = False
    no_refresh: bool = False
    on_rotate: RotateAction | None = None  # None: the default that follows from the references
    on_expiry: str = "keep"
    grace: float = DEFAULT_GRACE
    signal_group: bool = False  # forward to the command's whole process group (dumb-init's setsid mode)
    rewrite_signals: tuple[tuple[int, int], ...] = ()  # (received, sent instead; 0 drops it)
    remap_exit: tuple[tuple[int, int], ...] = ()  # (command's exit code, ours instead)
    health_listen: str | None = None
    # OpenBao / Vault (README: OpenBao and Vault)
    vault_addrs: tuple[str, ...] = ()
    vault_token_file: str | None = None
    vault_token: str | None = None
    vault_auth: str = "token"
    vault_role_id: str | None = None
    vault_secret_id_file: str | None = None
    vault_remove_secret_id_file: bool = False
    vault_jwt_file: str | None = None
    vault_role: str | None = None
    vault_auth_mount: str | None = None
    vault_namespace: str | None = None
    vault_poll: float = DEFAULT_VAULT_POLL
    env_origins: dict[str, str]  # variable -> the --env-file it was loaded from
    # setting -> the flag or variable it was taken from (e.g. "proxy" ->
    # "STRONGHOLD_PROXY_URL"), for error messages and the env-file rule
    origins: dict[str, str]

    def __init__(self) -> None:
        self.origins = {}
        self.env_origins = {}

    def origin(self, setting: str, default: str) -> str:
        return self.origins.get(setting, default)


# The switches read here (--vault-remove-secret-id-file is _vault_settings').
SWITCHES = tuple(o for o in BY_DEST.values() if o.kind == "switch" and o.dest != "vault_remove_secret_id_file")
# Twins an env file may not set: a project's .env must not loosen the user's own safeguards.
NOT_FROM_ENV_FILES = ("STRONGHOLD_INSECURE_HTTP", "STRONGHOLD_ALLOW_DISK")


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


def _picked_choice(options: Mapping[str, object], environ: Mapping[str, str], key: str) -> str:
    """A choice setting (flag, else twin), checked against the table's choices; its default if unset."""
    option = BY_DEST[key]
    value = _choice(_pick(options, environ, key), option.choices, option.env or option.flag)
    return value or str(option.default)


def build_settings(options: Mapping[str, object], environ: Mapping[str, str]) -> Settings:
    """Merge parsed flags (`options`, None for absent) with the environment."""
    settings = Settings()
    settings.proxy_url = _pick(options, environ, "proxy", settings.origins)
    settings.bootstrap_token_file = _pick(options, environ, "bootstrap_token_file", settings.origins)
    settings.bootstrap_token = environ.get("STRONGHOLD_BOOTSTRAP_TOKEN") or None
    if settings.bootstrap_token:
        settings.origins["bootstrap_token"] = "STRONGHOLD_BOOTSTRAP_TOKEN"
    settings.auth = _picked_choice(options, environ, "auth")
    settings.k8s_token_file = environ.get("STRONGHOLD_K8S_TOKEN_FILE") or DEFAULT_K8S_TOKEN_FILE
    if environ.get("STRONGHOLD_K8S_TOKEN_FILE"):
        settings.origins["k8s_token_file"] = "STRONGHOLD_K8S_TOKEN_FILE"
    settings.role = _pick(options, environ, "role")
    directory = _pick(options, environ, "dir")
    settings.dir_given = directory is not None
    settings.dir = directory or DEFAULT_DIR
    settings.ca_bundle = _pick(options, environ, "ca_bundle")
    settings.client_cert = _pick(options, environ, "client_cert")
    settings.client_key = _pick(options, environ, "client_key")
    settings.user = _pick(options, environ, "user")
    settings.file_group = _pick(options, environ, "file_group")
    settings.log_format = _picked_choice(options, environ, "log_format")
    settings.log_level = _picked_choice(options, environ, "log_level")
    for key in ("startup_timeout", "grace"):
        seconds = options.get(key)
        if isinstance(seconds, (int, float)):  # argparse's _seconds made it a number
            setattr(settings, key, float(seconds))
        elif (text := _twin(environ, key)) is not None:
            setattr(settings, key, _twin_value(parse_seconds, text, key))
    for option in SWITCHES:
        setattr(settings, option.dest, bool(options.get(option.dest)) or _switch(environ, option.env))
    settings.rewrite_signals = _list_setting(options, environ, "rewrite_signal", parse_rewrite_signal)
    settings.remap_exit = _list_setting(options, environ, "remap_exit", parse_remap_exit)
    if options.get("on_rotate") is not None:
        settings.on_rotate = options["on_rotate"]  # type: ignore[assignment]
    elif (text := _twin(environ, "on_rotate")) is not None:
        settings.on_rotate = _twin_value(parse_on_rotate, text, "on_rotate")
    settings.on_expiry = _picked_choice(options, environ, "on_expiry")
    if settings.mask_output and settings.no_refresh:
        raise ConfigError("--mask-output keeps stronghold-init in the output path; it cannot go with --no-refresh")
    if options.get("health_listen") is not None:
        settings.health_listen = str(options["health_listen"])
    _vault_settings(settings, options, environ)
    return settings


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
    options: Mapping[str, object], environ: Mapping[str, str], key: str, parse: Callable[[str], tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
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


def _vault_settings(settings: Settings, options: Mapping[str, object], environ: Mapping[str, str]) -> None:
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
    remove = options.get("vault_remove_secret_id_file") or _truthy(
        environ.get("STRONGHOLD_VAULT_REMOVE_SECRET_ID_FILE")
    )
    settings.vault_remove_secret_id_file = bool(remove)
    settings.vault_jwt_file = environ.get("STRONGHOLD_VAULT_JWT_FILE") or None
    if settings.vault_jwt_file:
        origins["vault_jwt_file"] = "STRONGHOLD_VAULT_JWT_FILE"
    settings.vault_role = environ.get("STRONGHOLD_VAULT_ROLE") or None
    settings.vault_auth_mount = environ.get("STRONGHOLD_VAULT_AUTH_MOUNT") or None
    settings.vault_namespace = environ.get("STRONGHOLD_VAULT_NAMESPACE") or None
    poll = options.get("vault_poll") or environ.get("STRONGHOLD_VAULT_POLL")
    if poll:
        from injector.references import parse_duration

        try:
            settings.vault_poll = float(parse_duration(str(poll)))
        except ValueError as exc:
            raise ConfigError(f"--vault-poll: {exc}") from None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    import ipaddress  # (free: urllib.parse, which the start path needs anyway, has loaded it)

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Never interpolated into an env file: `INNOCENT=${STRONGHOLD_BOOTSTRAP_TOKEN}`
# would otherwise hand a credential to the child under a name nobody scrubs.
NOT_INTERPOLATED = ("STRONGHOLD_", "VAULT_", "BAO_")


class _Interpolation(Mapping[str, str]):
    """What `${NAME}` in an env file can see: the real environment over the
    values loaded so far, without any credential-bearing variable."""

    def __init__(self, real: Mapping[str, str], loaded: Mapping[str, str]) -> None:
        self._real = real
        self._loaded = loaded

    def __getitem__(self, name: str) -> str:
        if name.startswith(NOT_INTERPOLATED):
            raise KeyError(name)
        if name in self._real:
            return self._real[name]
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:  # pragma: no cover - Mapping requires it; interpolation only looks names up
        return iter(())

    def __len__(self) -> int:  # pragma: no cover
        return 0


def load_env_files(paths: list[str], environ: MutableMapping[str, str]) -> dict[str, str]:
    """Load dotenv files into `environ` with python-dotenv (README: References).

    Precedence as Node's `--env-file` and Compose's `env_file`: the real
    environment wins over every file, and a later file over an earlier one.
    `${NAME}` is expanded (python-dotenv's POSIX syntax, `${NAME:-default}`
    too) from the real environment and what was loaded before it, but never
    from a STRONGHOLD_*, VAULT_* or BAO_* variable: those expand to "" (or the
    default).  Returns variable -> file it came from, for error messages and
    the rule that no credential from the environment goes to an address
    from a file (`check_env_file_addresses`).
    """
    if not paths:
        return {}
    from dotenv import dotenv_values  # imported only when used: it costs ~40 ms
    from dotenv.variables import parse_variables

    real = dict(environ)
    loaded: dict[str, str] = {}
    origins: dict[str, str] = {}
    for path in paths:
        if not os.path.isfile(path):
            raise ConfigError(f"--env-file {path}: no such file")
        try:
            values = dotenv_values(path, interpolate=False)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--env-file {path}: cannot read it ({type(exc).__name__})") from None
        visible = _Interpolation(real, loaded)
        for name, raw in values.items():
            if raw is None:
                continue
            if "\0" in raw or "\0" in name or "=" in name or not name:
                raise ConfigError(f"--env-file {path}: bad variable {name!r}")
            loaded[name] = "".join(atom.resolve(visible) for atom in parse_variables(raw))
            origins[name] = path
    for name, value in loaded.items():
        if name in real:
            del origins[name]  # the real environment wins
        else:
            environ[name] = value
    return origins


def check_env_file_switches(env_origins: Mapping[str, str]) -> None:
    """78 when an env file sets a twin that loosens a safeguard (--insecure-http, --allow-disk)."""
    for name in NOT_FROM_ENV_FILES:
        if name in env_origins:
            raise ConfigError(
                f"{name} comes from the env file {env_origins[name]}: an env file may not loosen this "
                "safeguard; set it in the environment or with its flag"
            )


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
