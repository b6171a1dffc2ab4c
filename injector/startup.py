"""The start-up steps every mode shares: configuration, source, first issue.

    environment (+ --env-file) -> Settings, [Reference] -> source -> [Credential]

Nothing here starts a process or a thread.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from injector.config import Settings, build_settings, check_env_file_addresses, check_proxy_url, load_env_files
from injector.errors import ConfigError
from injector.log import log
from injector.references import Credential, Reference, collect_references


class Plan:
    """What the user asked for, resolved but not yet acted on."""

    def __init__(self, settings: Settings, environ: dict[str, str], references: list[Reference]) -> None:
        self.settings = settings
        self.environ = environ  # our environment after --env-file, STRONGHOLD_* included
        self.references = references

    @property
    def file_references(self) -> list[Reference]:
        return [r for r in self.references if r.is_file]

    @property
    def env_references(self) -> list[Reference]:
        return [r for r in self.references if not r.is_file]


def make_plan(options: Mapping[str, object], env_files: Sequence[str]) -> Plan:
    environ = dict(os.environ)
    # Logging is configured first from flags and environment alone, so that
    # errors in the env files are already logged the way the user asked.
    configure_logging(build_settings(options, environ))
    origins = load_env_files(list(env_files), environ)
    settings = build_settings(options, environ)
    settings.env_origins = origins
    configure_logging(settings)
    references = collect_references(environ, origins)
    return Plan(settings=settings, environ=environ, references=references)


def configure_logging(settings: Settings) -> None:
    log.configure(level=settings.log_level, fmt=settings.log_format)


def read_secret_file(path: str, what: str) -> str:
    """A token file's content without surrounding whitespace; 78 if unusable."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        if isinstance(exc, PermissionError):
            # In a container this is a host file mounted for another uid: say what fixes it.
            reason += (
                f"; uid {os.getuid()} must be able to read it: chown or chmod the file it is mounted from,"
                " or run as its owner (--user)"
            )
        raise ConfigError(f"{what} {path}: cannot read it ({reason})") from None
    if not value:
        raise ConfigError(f"{what} {path} is empty")
    log.protect(value)
    return value


def login_body_factory(settings: Settings):  # -> Callable[[], dict[str, str]]
    """How to log in, checked now; the credential is read again at each login."""
    if settings.auth == "kubernetes":
        if not settings.role:
            raise ConfigError("STRONGHOLD_ROLE (--role) is required with kubernetes auth")
        jwt_file, role = settings.k8s_token_file, settings.role
        read_secret_file(jwt_file, "STRONGHOLD_K8S_TOKEN_FILE")
        return lambda: {
            "method": "kubernetes",
            "jwt": read_secret_file(jwt_file, "STRONGHOLD_K8S_TOKEN_FILE"),
            "role": role,
        }
    if settings.bootstrap_token_file:
        token_file = settings.bootstrap_token_file
        token = read_secret_file(token_file, "bootstrap token file")
        os.environ.pop("STRONGHOLD_BOOTSTRAP_TOKEN_FILE", None)  # nothing we start learns where it is
        if settings.remove_bootstrap_token_file:
            # A one-time token: gone from disk, kept only in this non-dumpable process.
            try:
                os.unlink(token_file)
            except OSError as exc:
                raise ConfigError(f"cannot remove the bootstrap token file {token_file}: {exc.strerror}") from None
            return lambda: {"method": "bootstrap_token", "token": token}
        return lambda: {"method": "bootstrap_token", "token": read_secret_file(token_file, "bootstrap token file")}
    if settings.bootstrap_token:
        token = settings.bootstrap_token
        log.protect(token)
        # Out of our own environment too: nothing we start later inherits it.
        os.environ.pop("STRONGHOLD_BOOTSTRAP_TOKEN", None)
        return lambda: {"method": "bootstrap_token", "token": token}
    raise ConfigError(
        "no bootstrap credential: set STRONGHOLD_BOOTSTRAP_TOKEN_FILE (--bootstrap-token-file) "
        "or STRONGHOLD_BOOTSTRAP_TOKEN"
    )


def open_source(settings: Settings, references: Sequence[Reference]):  # -> a source (see sources/)
    """The source for these references' schemes, configuration checked (no network yet)."""
    schemes = {reference.scheme for reference in references}
    by_scheme = {}
    if "stronghold" in schemes:
        by_scheme["stronghold"] = open_proxy_source(settings)
    if schemes & {"vault", "vault-token"}:
        bao = open_openbao_source(settings)
        by_scheme.update({"vault": bao, "vault-token": bao})
    if len(set(by_scheme.values())) == 1:
        return next(iter(by_scheme.values()))
    from injector.sources import Combined

    return Combined(by_scheme)


def _tls(settings: Settings):  # -> TLSOptions
    """TLS settings, files checked now (78).  Verification is never turned off."""
    for flag, path in (
        ("--ca-bundle", settings.ca_bundle),
        ("--client-cert", settings.client_cert),
        ("--client-key", settings.client_key),
    ):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{flag} {path}: no such file")
    if settings.client_key and not settings.client_cert:
        raise ConfigError("--client-key needs --client-cert")
    from injector.transport import TLSOptions

    return TLSOptions(ca_bundle=settings.ca_bundle, client_cert=settings.client_cert, client_key=settings.client_key)


def open_openbao_source(settings: Settings):  # -> OpenBaoSource
    if not settings.vault_addrs:
        raise ConfigError("a vault:// reference needs STRONGHOLD_VAULT_ADDR (or BAO_ADDR, VAULT_ADDR)")
    check_env_file_addresses(settings, "vault", vault_credentials_sent(settings))
    addrs = [
        check_proxy_url(a, insecure_http=settings.insecure_http, what="OpenBao address") for a in settings.vault_addrs
    ]
    from injector.sources.openbao import OpenBaoSource, vault_login_from
    from injector.transport import Transport, display_url

    login = vault_login_from(settings, read_secret_file)
    tls = _tls(settings)
    origin = _origin_text(settings, "vault_addrs", "STRONGHOLD_VAULT_ADDR")
    transports = [Transport(a, tls=tls, label=f"{display_url(a)} ({origin})") for a in addrs]
    return OpenBaoSource(transports, login, namespace=settings.vault_namespace)


def _origin_text(settings: Settings, setting: str, default: str) -> str:
    """`from STRONGHOLD_PROXY_URL`, `from --proxy`, `from STRONGHOLD_PROXY_URL in .env`."""
    variable = settings.origin(setting, default)
    env_file = settings.env_origins.get(variable)
    return f"from {variable} in {env_file}" if env_file else f"from {variable}"


def open_proxy_source(settings: Settings):  # -> ProxySource
    """Check the proxy configuration and build the client (no network yet)."""
    if not settings.proxy_url:
        raise ConfigError("STRONGHOLD_PROXY_URL (--proxy) is required when there is a reference")
    url = check_proxy_url(settings.proxy_url, insecure_http=settings.insecure_http)
    check_env_file_addresses(settings, "proxy", proxy_credentials_sent(settings))
    login_body = login_body_factory(settings)
    tls = _tls(settings)
    from injector.sources.proxy import ProxySource
    from injector.transport import Transport, display_url

    label = f"{display_url(url)} ({_origin_text(settings, 'proxy', 'STRONGHOLD_PROXY_URL')})"
    return ProxySource(Transport(url, tls=tls, label=label), login_body)


def proxy_credentials_sent(settings: Settings) -> list[str]:
    """The settings whose credential a proxy login sends (as login_body_factory picks)."""
    if settings.auth == "kubernetes":
        return ["k8s_token_file"]
    return ["bootstrap_token_file"] if settings.bootstrap_token_file else ["bootstrap_token"]


def vault_credentials_sent(settings: Settings) -> list[str]:
    """The settings whose credential an OpenBao login sends (as vault_login_from picks)."""
    if settings.vault_auth == "approle":
        return ["vault_secret_id_file"]
    if settings.vault_auth == "jwt":
        return ["vault_jwt_file"]
    return ["vault_token_file"] if settings.vault_token_file else ["vault_token"]


def issue_all(source, references: Sequence[Reference], settings: Settings) -> list[Credential]:
    """Log in and issue every reference in one request, retrying transient failures."""
    import time

    from injector.errors import TransientError

    started = time.monotonic()
    deadline = started + settings.startup_timeout
    try:  # the first attempt does not import the retry machinery
        credentials = source.issue(references)
    except TransientError as first:
        from injector.retry import retry_after_failure

        credentials = retry_after_failure(
            lambda: source.issue(references), first, deadline=deadline, what="fetching credentials", started=started
        )
    log.info("credentials issued", count=len(credentials))
    return credentials
