"""Settings from flags and STRONGHOLD_* variables, and --env-file loading.

Each setting has an environment variable and, mostly, a flag; the flag wins.
Pure apart from reading the env files the user named.
"""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Mapping, MutableMapping
from urllib.parse import urlsplit

from injector.errors import ConfigError
from injector.log import LEVELS, LOG_FORMATS

DEFAULT_DIR = "/run/stronghold"
DEFAULT_K8S_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
AUTH_METHODS = ("bootstrap_token", "kubernetes")
VAULT_AUTH_METHODS = ("token", "approle", "jwt")
DEFAULT_VAULT_POLL = 300.0  # SPEC section 9: static values are re-read every 5 minutes
ON_EXPIRY = ("keep", "exit")


class RotateAction(namedtuple("RotateAction", "kind signal", defaults=(0,))):
    """What happens to the child when a credential rotates (--on-rotate).

    kind: "restart", "signal" or "none"; signal: the signal number for "signal"
    """

    __slots__ = ()

    def __str__(self) -> str:
        if self.kind == "signal":
            import signal as _signal

            return f"signal:{_signal.Signals(self.signal).name}"
        return self.kind


def parse_on_rotate(text: str) -> RotateAction:
    if text in ("restart", "none"):
        return RotateAction(text)
    if text.startswith("signal:"):
        return RotateAction("signal", parse_signal(text[len("signal:") :]))
    raise ValueError(f"bad --on-rotate {text!r} (use restart, none or signal:NAME)")


def parse_signal(name: str) -> int:
    import signal

    upper = name.upper()
    candidate = upper if upper.startswith("SIG") else "SIG" + upper
    try:
        return int(signal.Signals[candidate])
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


def parse_signal_number(text: str) -> int:
    """A signal as a user writes it: 15, TERM, SIGTERM, RTMIN+3, SIGRTMAX-1."""
    import signal

    upper = text.strip().upper()
    if upper.isdigit():
        number = int(upper)
    else:
        name = upper.removeprefix("SIG")
        for base, sign in (("RTMIN", 1), ("RTMAX", -1)):
            if name.startswith(base):
                offset = name[len(base) :]
                step = offset[1:] if offset[:1] in ("+", "-") and offset[1:].isdigit() else None
                if offset and (step is None or (offset[0] == "+") != (sign == 1)):
                    raise ValueError(f"unknown signal {text!r}")
                number = int(getattr(signal, "SIG" + base)) + sign * int(step or 0)
                break
        else:
            return parse_signal(name)
    if number not in signal.valid_signals():
        raise ValueError(f"unknown signal {text!r}")
    return number


def parse_rewrite_signal(text: str) -> tuple[int, int]:
    """--rewrite-signal FROM:TO (dumb-init's -r): TO 0 drops FROM instead of forwarding it."""
    import signal

    source, sep, target = text.partition(":")
    if not sep:
        raise ValueError(f"bad --rewrite-signal {text!r} (use FROM:TO, e.g. TERM:QUIT)")
    frm = parse_signal_number(source)
    if frm in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        raise ValueError(f"--rewrite-signal: {source} cannot be caught or forwarded, so it cannot be rewritten")
    to = 0 if target.strip() == "0" else parse_signal_number(target)
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
    startup_timeout: float = 30.0
    insecure_http: bool = False
    allow_disk: bool = False
    remove_bootstrap_token_file: bool = False
    mask_output: bool = False
    no_refresh: bool = False
    on_rotate: RotateAction | None = None  # None: the default that follows from the references
    on_expiry: str = "keep"
    grace: float = 10.0
    signal_group: bool = False  # forward to the command's whole process group (dumb-init's setsid mode)
    rewrite_signals: tuple[tuple[int, int], ...] = ()  # (received, sent instead; 0 drops it)
    remap_exit: tuple[tuple[int, int], ...] = ()  # (command's exit code, ours instead)
    health_listen: str | None = None
    # OpenBao / Vault (SPEC section 9)
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


# flag attribute -> environment variable twin (SPEC section 3)
ENV_TWINS = {
    "proxy": "STRONGHOLD_PROXY_URL",
    "bootstrap_token_file": "STRONGHOLD_BOOTSTRAP_TOKEN_FILE",
    "auth": "STRONGHOLD_AUTH",
    "role": "STRONGHOLD_ROLE",
    "dir": "STRONGHOLD_DIR",
    "ca_bundle": "STRONGHOLD_CA_BUNDLE",
    "client_cert": "STRONGHOLD_CLIENT_CERT",
    "client_key": "STRONGHOLD_CLIENT_KEY",
    "user": "STRONGHOLD_USER",
    "file_group": "STRONGHOLD_FILE_GROUP",
    "log_format": "STRONGHOLD_LOG_FORMAT",
    "log_level": "STRONGHOLD_LOG_LEVEL",
}


def _pick(options: Mapping[str, object], environ: Mapping[str, str], key: str) -> str | None:
    value = options.get(key)
    if value is not None:
        return str(value)
    env_name = ENV_TWINS.get(key)
    return environ.get(env_name) or None if env_name else None


def _choice(value: str | None, allowed: tuple[str, ...] | list[str], what: str) -> str | None:
    if value is not None and value not in allowed:
        raise ConfigError(f"{what}: {value!r} is not one of {', '.join(allowed)}")
    return value


def build_settings(options: Mapping[str, object], environ: Mapping[str, str]) -> Settings:
    """Merge parsed flags (`options`, None for absent) with the environment."""
    settings = Settings()
    settings.proxy_url = _pick(options, environ, "proxy")
    settings.bootstrap_token_file = _pick(options, environ, "bootstrap_token_file")
    settings.bootstrap_token = environ.get("STRONGHOLD_BOOTSTRAP_TOKEN") or None
    settings.auth = _choice(_pick(options, environ, "auth"), AUTH_METHODS, "STRONGHOLD_AUTH") or "bootstrap_token"
    settings.k8s_token_file = environ.get("STRONGHOLD_K8S_TOKEN_FILE") or DEFAULT_K8S_TOKEN_FILE
    settings.role = _pick(options, environ, "role")
    directory = _pick(options, environ, "dir")
    settings.dir_given = directory is not None
    settings.dir = directory or DEFAULT_DIR
    settings.ca_bundle = _pick(options, environ, "ca_bundle")
    settings.client_cert = _pick(options, environ, "client_cert")
    settings.client_key = _pick(options, environ, "client_key")
    settings.user = _pick(options, environ, "user")
    settings.file_group = _pick(options, environ, "file_group")
    settings.log_format = _choice(_pick(options, environ, "log_format"), LOG_FORMATS, "STRONGHOLD_LOG_FORMAT") or "text"
    settings.log_level = _choice(_pick(options, environ, "log_level"), list(LEVELS), "STRONGHOLD_LOG_LEVEL") or "info"
    for key in ("startup_timeout", "grace"):
        if options.get(key) is not None:
            setattr(settings, key, float(options[key]))  # type: ignore[arg-type]
    for key in ("insecure_http", "allow_disk", "no_refresh", "remove_bootstrap_token_file", "mask_output"):
        setattr(settings, key, bool(options.get(key)))
    settings.signal_group = bool(options.get("signal_group"))
    settings.rewrite_signals = tuple(options.get("rewrite_signal") or ())  # type: ignore[arg-type]
    settings.remap_exit = tuple(options.get("remap_exit") or ())  # type: ignore[arg-type]
    if options.get("on_rotate") is not None:
        settings.on_rotate = options["on_rotate"]  # type: ignore[assignment]
    if options.get("on_expiry") is not None:
        settings.on_expiry = str(options["on_expiry"])
    if options.get("health_listen") is not None:
        settings.health_listen = str(options["health_listen"])
    _vault_settings(settings, options, environ)
    return settings


def _first(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if environ.get(name):
            return environ[name]
    return None


def _vault_settings(settings: Settings, options: Mapping[str, object], environ: Mapping[str, str]) -> None:
    addrs = _first(environ, "STRONGHOLD_VAULT_ADDR", "BAO_ADDR", "VAULT_ADDR")
    settings.vault_addrs = tuple(a.strip() for a in addrs.split(",") if a.strip()) if addrs else ()
    settings.vault_token_file = environ.get("STRONGHOLD_VAULT_TOKEN_FILE") or None
    settings.vault_token = _first(environ, "STRONGHOLD_VAULT_TOKEN", "BAO_TOKEN", "VAULT_TOKEN")
    auth = _choice(environ.get("STRONGHOLD_VAULT_AUTH") or None, VAULT_AUTH_METHODS, "STRONGHOLD_VAULT_AUTH")
    settings.vault_auth = auth or "token"
    settings.vault_role_id = environ.get("STRONGHOLD_VAULT_ROLE_ID") or None
    settings.vault_secret_id_file = environ.get("STRONGHOLD_VAULT_SECRET_ID_FILE") or None
    remove = options.get("vault_remove_secret_id_file") or _truthy(
        environ.get("STRONGHOLD_VAULT_REMOVE_SECRET_ID_FILE")
    )
    settings.vault_remove_secret_id_file = bool(remove)
    settings.vault_jwt_file = environ.get("STRONGHOLD_VAULT_JWT_FILE") or None
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
    """Return the URL without a trailing slash, or refuse it (SPEC section 3).

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
    import ipaddress  # only on this path: it costs ~1.5 ms at start-up

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_env_files(paths: list[str], environ: MutableMapping[str, str]) -> dict[str, str]:
    """Load dotenv files into `environ` with python-dotenv, in order.

    As with python-dotenv's `load_dotenv()` called once per file, a variable
    already set wins: over the files, and the first file over later ones.
    Returns variable -> file it came from, for error messages.
    """
    if not paths:
        return {}
    from dotenv import dotenv_values  # imported only when used: it costs ~40 ms

    origins: dict[str, str] = {}
    for path in paths:
        if not os.path.isfile(path):
            raise ConfigError(f"--env-file {path}: no such file")
        try:
            values = dotenv_values(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--env-file {path}: cannot read it ({type(exc).__name__})") from None
        for name, value in values.items():
            if value is None or name in environ:
                continue
            if "\0" in value or "\0" in name or "=" in name or not name:
                raise ConfigError(f"--env-file {path}: bad variable {name!r}")
            environ[name] = value
            origins[name] = path
    return origins
