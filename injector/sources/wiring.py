"""From checked settings to a source: the one place that wires configuration to the sources.

Everything here runs before the first request: addresses, TLS files, the
login method and its credential are checked (78 when unusable), a one-time
credential file is read and removed, and a credential from the real
environment is never sent to an address an env file set (README: On a laptop).
"""

from __future__ import annotations

import os

from injector.errors import ConfigError
from injector.log import log
from injector.settings.settings import Settings, check_env_file_addresses, check_proxy_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from injector.settings.references import Reference
    from injector.sources.interface import Source
    from injector.sources.openbao.auth import VaultLogin
    from injector.sources.openbao.source import OpenBaoSource
    from injector.sources.proxy import LoginBody, ProxySource
    from injector.sources.transport import TLSOptions


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
    check_static_credential(value, f"{what} {path}")
    return value


def check_static_credential(value: str, source: str) -> None:
    """78 for a credential with a line break or other control character in it.

    A trailing newline is common (a Kubernetes secretKeyRef, `echo` into a
    file); sent on, it would break the HTTP header and the error text would
    carry the token.  Say where it came from instead.
    """
    log.protect(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(
            f"{source}: the credential contains a line break or control character (a trailing newline?); remove it"
        )


def open_source(settings: Settings, references: Sequence[Reference]) -> Source:
    """The source for these references' schemes, configuration checked (no network yet)."""
    schemes = {reference.scheme for reference in references}
    by_scheme: dict[str, Source] = {}
    if "stronghold" in schemes:
        by_scheme["stronghold"] = open_proxy_source(settings)
    if schemes & {"vault", "vault-token"}:
        bao = open_openbao_source(settings)
        by_scheme.update({"vault": bao, "vault-token": bao})
    if any(scheme.startswith("aws-") for scheme in schemes):
        from injector.sources.aws.wiring import open_aws_source

        aws = open_aws_source(settings, references, _tls(settings))
        by_scheme.update({"aws-sm": aws, "aws-ssm": aws, "aws-sts": aws})
    if len(set(by_scheme.values())) == 1:
        return next(iter(by_scheme.values()))
    from injector.sources.combined import Combined

    return Combined(by_scheme)


def _tls(settings: Settings) -> TLSOptions:
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
    from injector.sources.transport import TLSOptions

    return TLSOptions(ca_bundle=settings.ca_bundle, client_cert=settings.client_cert, client_key=settings.client_key)


def open_openbao_source(settings: Settings) -> OpenBaoSource:
    if not settings.vault_addrs:
        raise ConfigError("a vault:// reference needs STRONGHOLD_VAULT_ADDR (or BAO_ADDR, VAULT_ADDR)")
    check_env_file_addresses(settings, "vault", vault_credentials_sent(settings))
    addrs = [
        check_proxy_url(a, insecure_http=settings.insecure_http, what="OpenBao address") for a in settings.vault_addrs
    ]
    from injector.sources.openbao.source import OpenBaoSource
    from injector.sources.transport import Transport, display_url

    login = vault_login_from(settings)
    tls = _tls(settings)
    origin = _origin_text(settings, "vault_addrs", "STRONGHOLD_VAULT_ADDR")
    transports = [Transport(a, tls=tls, label=f"{display_url(a)} ({origin})") for a in addrs]
    return OpenBaoSource(transports, login, namespace=settings.vault_namespace)


def _origin_text(settings: Settings, setting: str, default: str) -> str:
    """`from STRONGHOLD_PROXY_URL`, `from --proxy`, `from STRONGHOLD_PROXY_URL in .env`."""
    variable = settings.origin(setting, default)
    env_file = settings.env_origins.get(variable)
    return f"from {variable} in {env_file}" if env_file else f"from {variable}"


def open_proxy_source(settings: Settings) -> ProxySource:
    """Check the proxy configuration and build the client (no network yet)."""
    if not settings.proxy_url:
        raise ConfigError("STRONGHOLD_PROXY_URL (--proxy) is required when there is a reference")
    url = check_proxy_url(settings.proxy_url, insecure_http=settings.insecure_http)
    check_env_file_addresses(settings, "proxy", proxy_credentials_sent(settings))
    login_body = login_body_factory(settings)
    tls = _tls(settings)
    from injector.sources.proxy import ProxySource
    from injector.sources.transport import Transport, display_url

    label = f"{display_url(url)} ({_origin_text(settings, 'proxy', 'STRONGHOLD_PROXY_URL')})"
    return ProxySource(Transport(url, tls=tls, label=label), login_body, credential=login_credential(settings))


def login_credential(settings: Settings) -> str:
    """What a proxy login sends and where it came from, for a refusal's message (never the value)."""
    if settings.auth == "kubernetes":
        return f"the service-account token from {settings.origin('k8s_token_file', 'the default path')} " + (
            settings.k8s_token_file
        )
    if settings.bootstrap_token_file:
        where = _origin_text(settings, "bootstrap_token_file", "STRONGHOLD_BOOTSTRAP_TOKEN_FILE")
        return f"the bootstrap token {where} ({settings.bootstrap_token_file})"
    return "the bootstrap token " + _origin_text(settings, "bootstrap_token", "STRONGHOLD_BOOTSTRAP_TOKEN")


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


def login_body_factory(settings: Settings) -> LoginBody:
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
        check_static_credential(token, "STRONGHOLD_BOOTSTRAP_TOKEN")
        # Out of our own environment too: nothing we start later inherits it.
        os.environ.pop("STRONGHOLD_BOOTSTRAP_TOKEN", None)
        return lambda: {"method": "bootstrap_token", "token": token}
    raise ConfigError(
        "no bootstrap credential: set STRONGHOLD_BOOTSTRAP_TOKEN_FILE (--bootstrap-token-file) "
        "or STRONGHOLD_BOOTSTRAP_TOKEN"
    )


def _token_variable(value: str) -> str:
    """Which variable the OpenBao token came from (for the error that names it)."""
    for name in ("STRONGHOLD_VAULT_TOKEN", "BAO_TOKEN", "VAULT_TOKEN"):
        if os.environ.get(name) == value:
            return name
    return "STRONGHOLD_VAULT_TOKEN, BAO_TOKEN or VAULT_TOKEN"


def vault_login_from(settings: Settings) -> VaultLogin:
    """Check the auth configuration now (78 if incomplete or a credential holds a line break) and build the login."""
    from injector.sources.openbao.auth import VaultLogin

    read_file = read_secret_file
    method = settings.vault_auth
    if method == "token" and settings.vault_token and not settings.vault_token_file:
        check_static_credential(settings.vault_token, _token_variable(settings.vault_token))
    if method == "approle" and settings.vault_role_id:
        check_static_credential(settings.vault_role_id, "STRONGHOLD_VAULT_ROLE_ID")
    if method == "token":
        if settings.vault_token_file:
            read_file(settings.vault_token_file, "STRONGHOLD_VAULT_TOKEN_FILE")
        elif not settings.vault_token:
            raise ConfigError(
                "no OpenBao token: set STRONGHOLD_VAULT_TOKEN_FILE (or STRONGHOLD_VAULT_TOKEN, BAO_TOKEN, "
                "VAULT_TOKEN), or STRONGHOLD_VAULT_AUTH=approle|jwt"
            )
        else:
            log.protect(settings.vault_token)
        return VaultLogin(
            "token", token=settings.vault_token, token_file=settings.vault_token_file, read_file=read_file
        )
    if method == "approle":
        if not settings.vault_role_id or not settings.vault_secret_id_file:
            raise ConfigError("approle auth needs STRONGHOLD_VAULT_ROLE_ID and STRONGHOLD_VAULT_SECRET_ID_FILE")
        secret_id = read_file(settings.vault_secret_id_file, "STRONGHOLD_VAULT_SECRET_ID_FILE")
        if settings.vault_remove_secret_id_file:
            # As Vault Agent's remove_secret_id_file_after_reading: the secret
            # id lives on only in this process's (non-dumpable) memory.
            try:
                os.unlink(settings.vault_secret_id_file)
            except OSError as exc:
                raise ConfigError(f"cannot remove {settings.vault_secret_id_file}: {exc.strerror}") from None
        return VaultLogin(
            "approle",
            role_id=settings.vault_role_id,
            secret_id=secret_id,
            mount=settings.vault_auth_mount,
            read_file=read_file,
        )
    if not settings.vault_jwt_file or not settings.vault_role:
        raise ConfigError("jwt auth needs STRONGHOLD_VAULT_JWT_FILE and STRONGHOLD_VAULT_ROLE")
    read_file(settings.vault_jwt_file, "STRONGHOLD_VAULT_JWT_FILE")
    return VaultLogin(
        "jwt",
        jwt_file=settings.vault_jwt_file,
        role=settings.vault_role,
        mount=settings.vault_auth_mount,
        read_file=read_file,
    )
