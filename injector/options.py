"""One table of the options a user sets: flag, environment twin, default, help.

    cli.py      builds the argparse options from it (help text ends "[TWIN] (default X)")
    config.py   reads each flag, else its twin, and validates choices, through it
    README      its Configuration table is checked against it (tests/test_options.py)

A row with no flag is an environment variable only; a row with no twin is a
flag only.  Every option of running a command has a twin, so an image whose
entrypoint ends in `--` can still be tuned with `-e STRONGHOLD_...`; a list
option's twin takes its items comma-separated.  The OpenBao settings other than --vault-poll and
--vault-remove-secret-id-file are variables (README: OpenBao and Vault) and
live in config.py's `_vault_settings`, which reads several names per setting.
"""

from __future__ import annotations

from collections import namedtuple

from injector.log import LEVELS, LOG_FORMATS

DEFAULT_DIR = "/run/stronghold"
DEFAULT_K8S_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
DEFAULT_STARTUP_TIMEOUT = 30.0
DEFAULT_GRACE = 10.0
DEFAULT_VAULT_POLL = 300.0  # README: OpenBao and Vault: static values are re-read every 5 minutes
DEV_PROXY_LISTEN = "127.0.0.1:8787"  # `dev-proxy --listen`
DEV_PROXY_TTL = 300  # `dev-proxy --ttl`: most seconds a credential lives
AUTH_METHODS = ("bootstrap_token", "kubernetes")
VAULT_AUTH_METHODS = ("token", "approle", "jwt")
ON_EXPIRY = ("keep", "exit")

# Where an option is taken: every credential mode and the top level ("common"),
# running a command only ("run"), or running a command and the sidecar ("refresh").
COMMON, RUN, REFRESH = "common", "run", "refresh"


class Option(
    namedtuple(
        "Option",
        "flag dest env help metavar kind choices default shown_default group scope",
        defaults=(None, "text", (), None, None, "", COMMON),
    )
):
    """One row.  kind: text, switch, seconds, duration, choice, append (argparse's `type` named by `parse`)."""

    __slots__ = ()

    def help_text(self) -> str:
        """The --help line: what it does, its twin, its default."""
        parts = [self.help] if self.help else []
        if self.env:
            parts.append(f"[{self.env}]")
        if self.shown_default:
            parts.append(f"(default {self.shown_default})")
        return " ".join(parts)


AUTH = "proxy and authentication"
VAULT = "OpenBao / Vault (see README; settings are STRONGHOLD_VAULT_* variables)"
DELIVERY = "delivery"
LOGGING = "logging"
RUNNING = "running the command"
REFRESHING = "refresh"

OPTIONS = (
    Option("--proxy", "proxy", "STRONGHOLD_PROXY_URL", "credential proxy base URL", "URL", group=AUTH),
    Option(
        "--bootstrap-token-file",
        "bootstrap_token_file",
        "STRONGHOLD_BOOTSTRAP_TOKEN_FILE",
        "file holding the bootstrap token",
        "PATH",
        group=AUTH,
    ),
    Option(
        "--remove-bootstrap-token-file",
        "remove_bootstrap_token_file",
        "STRONGHOLD_REMOVE_BOOTSTRAP_TOKEN_FILE",
        "delete the bootstrap token file once read (a one-time token; kept in memory for re-login)",
        kind="switch",
        group=AUTH,
    ),
    Option(
        "--auth",
        "auth",
        "STRONGHOLD_AUTH",
        "login method",
        kind="choice",
        choices=AUTH_METHODS,
        default="bootstrap_token",
        shown_default="bootstrap_token",
        group=AUTH,
    ),
    Option("--role", "role", "STRONGHOLD_ROLE", "role sent with kubernetes login", "NAME", group=AUTH),
    Option(
        "--ca-bundle", "ca_bundle", "STRONGHOLD_CA_BUNDLE", "CA certificates for TLS to the proxy", "PATH", group=AUTH
    ),
    Option(
        "--client-cert",
        "client_cert",
        "STRONGHOLD_CLIENT_CERT",
        "client certificate for mutual TLS",
        "PATH",
        group=AUTH,
    ),
    Option("--client-key", "client_key", "STRONGHOLD_CLIENT_KEY", "its private key", "PATH", group=AUTH),
    Option(
        "--insecure-http",
        "insecure_http",
        "STRONGHOLD_INSECURE_HTTP",
        "allow plain http:// to a non-loopback proxy",
        kind="switch",
        group=AUTH,
    ),
    Option(
        "--startup-timeout",
        "startup_timeout",
        "STRONGHOLD_STARTUP_TIMEOUT",
        "how long start-up retries transient failures",
        "SECONDS",
        kind="seconds",
        default=DEFAULT_STARTUP_TIMEOUT,
        shown_default="30",
        group=AUTH,
    ),
    Option(
        "--vault-poll",
        "vault_poll",
        "STRONGHOLD_VAULT_POLL",
        "re-read static values (KV) this often",
        "DURATION",
        kind="duration",
        default=DEFAULT_VAULT_POLL,
        shown_default="5m",
        group=VAULT,
    ),
    Option(
        "--vault-remove-secret-id-file",
        "vault_remove_secret_id_file",
        "STRONGHOLD_VAULT_REMOVE_SECRET_ID_FILE",
        "delete the AppRole secret id file once read",
        kind="switch",
        group=VAULT,
    ),
    Option(
        "--user",
        "user",
        "STRONGHOLD_USER",
        "run the command as this user; files are owned by it",
        "USER[:GROUP]",
        group=DELIVERY,
    ),
    Option(
        "--dir",
        "dir",
        "STRONGHOLD_DIR",
        "where _FILE tokens are written",
        "PATH",
        default=DEFAULT_DIR,
        shown_default=DEFAULT_DIR,
        group=DELIVERY,
    ),
    Option(
        "--allow-disk",
        "allow_disk",
        "STRONGHOLD_ALLOW_DISK",
        "allow a --dir that is not on tmpfs or ramfs",
        kind="switch",
        group=DELIVERY,
    ),
    Option(
        "--file-group",
        "file_group",
        "STRONGHOLD_FILE_GROUP",
        "make token files 0440 and --dir 0750 for this group (e.g. an app container's)",
        "GROUP",
        group=DELIVERY,
    ),
    Option(
        "--env-file",
        "env_file",
        "STRONGHOLD_ENV_FILE",
        "load a dotenv file first (repeatable; set variables win)",
        "PATH",
        kind="append",
        group=DELIVERY,
    ),
    Option(
        "--log-format",
        "log_format",
        "STRONGHOLD_LOG_FORMAT",
        "log lines on stderr",
        kind="choice",
        choices=LOG_FORMATS,
        default="text",
        shown_default="text",
        group=LOGGING,
    ),
    Option(
        "--log-level",
        "log_level",
        "STRONGHOLD_LOG_LEVEL",
        "",
        kind="choice",
        choices=tuple(LEVELS),
        default="info",
        shown_default="info",
        group=LOGGING,
    ),
    Option(
        "--no-refresh",
        "no_refresh",
        "STRONGHOLD_NO_REFRESH",
        "fetch once and exec the command (nothing stays running; as PID 1 it stays as the parent)",
        kind="switch",
        group=RUNNING,
        scope=RUN,
    ),
    Option(
        "--on-rotate",
        "on_rotate",
        "STRONGHOLD_ON_ROTATE",
        "what a rotation does to the command (default restart with env references, else none)",
        "restart|signal:SIG|none",
        kind="on_rotate",
        group=RUNNING,
        scope=RUN,
    ),
    Option(
        "--mask-output",
        "mask_output",
        "STRONGHOLD_MASK_OUTPUT",
        "replace token values in the command's stdout/stderr with <redacted:NAME> (costs a copy of its output)",
        kind="switch",
        group=RUNNING,
        scope=RUN,
    ),
    Option(
        "--grace",
        "grace",
        "STRONGHOLD_GRACE",
        "SIGTERM-to-SIGKILL wait when restarting or stopping, also after a SIGTERM to us",
        "SECONDS",
        kind="seconds",
        default=DEFAULT_GRACE,
        shown_default="10",
        group=RUNNING,
        scope=RUN,
    ),
    Option(
        "--signal-group",
        "signal_group",
        "STRONGHOLD_SIGNAL_GROUP",
        "forward signals to the command's whole process group, and SIGTERM the rest of it when "
        "the command exits (dumb-init's setsid mode)",
        kind="switch",
        group=RUNNING,
        scope=RUN,
    ),
    Option(
        "--rewrite-signal",
        "rewrite_signal",
        "STRONGHOLD_REWRITE_SIGNAL",
        "forward signal FROM as TO, e.g. TERM:QUIT for a graceful nginx stop; TO 0 drops it (repeatable)",
        "FROM:TO",
        kind="rewrite_signal",
        group=RUNNING,
        scope=RUN,
    ),
    Option(
        "--remap-exit",
        "remap_exit",
        "STRONGHOLD_REMAP_EXIT",
        "exit with the second code when the command exits with the first, e.g. 143:0 (repeatable)",
        "CODE:CODE",
        kind="remap_exit",
        group=RUNNING,
        scope=RUN,
    ),
    Option(
        "--on-expiry",
        "on_expiry",
        "STRONGHOLD_ON_EXPIRY",
        "when a token expires unrefreshed: keep trying, or exit 69",
        kind="choice",
        choices=ON_EXPIRY,
        default="keep",
        shown_default="keep",
        group=REFRESHING,
        scope=REFRESH,
    ),
    # Variables with no flag: a credential never goes on a command line (ps shows it to everyone).
    Option(None, "bootstrap_token", "STRONGHOLD_BOOTSTRAP_TOKEN", "the bootstrap token itself (local dev only)"),
    Option(
        None,
        "k8s_token_file",
        "STRONGHOLD_K8S_TOKEN_FILE",
        "service-account JWT for kubernetes",
        default=DEFAULT_K8S_TOKEN_FILE,
        shown_default=DEFAULT_K8S_TOKEN_FILE,
    ),
)

BY_DEST = {option.dest: option for option in OPTIONS}
ENV_TWINS = {option.dest: option.env for option in OPTIONS if option.env}  # setting -> its variable
