"""Command line: parse, wire the pieces together, and map every error to an exit code.

`main()` reads like a table of contents: each step is one named call, so
the order of start-up can be checked at a glance.  `run_cli()` is the one
place where exceptions become exit codes: nothing else calls sys.exit, so
every failure is reported once, as one line, with the code in the README.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from injector import __version__
from injector.errors import ConfigError, ExitCode, StrongholdError, UsageError
from injector.log import LEVELS, log
from injector.settings.actions import parse_on_rotate, parse_remap_exit, parse_rewrite_signal
from injector.settings.options import COMMON, DEV_PROXY_LISTEN, DEV_PROXY_TTL, LOGGING, OPTIONS, REFRESH, RUN

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from injector.settings.actions import RotateAction

    Subparsers = argparse._SubParsersAction[Any]

COMPLETION_SHELLS = ("bash", "zsh", "fish")
DESCRIPTION = """\
Fetch short-lived, scoped credentials from a credential proxy (or OpenBao/Vault)
and hand them to a command as process-only environment variables or files on tmpfs.

  stronghold-init [OPTIONS] -- COMMAND [ARGS...]   run COMMAND with its credentials
  stronghold-init check [OPTIONS]                  show what would go where
  stronghold-init fetch [OPTIONS]                  write the files once and exit
  stronghold-init sidecar [OPTIONS]                keep files fresh in a shared directory
  stronghold-init dev-proxy --secrets FILE         a local credential proxy
  stronghold-init completion bash|zsh|fish         print a shell completion script
  stronghold-init audit TARGET...                  show that an image holds no credential
  stronghold-init webhook --tls-cert F --tls-key F --init-image IMAGE
                                                   inject stronghold-init into Kubernetes pods
  stronghold-init install DIR                      copy the Python-free bundle into DIR

A reference is a variable whose value is one of:
  stronghold://SECRET[?scope=a,b&ttl=15m]          a token from the credential proxy
  vault://API-PATH[?ttl=15m]#FIELD                 a field read from OpenBao/Vault
  vault-token://?policies=a,b[&ttl=15m]            a token minted by OpenBao/Vault
NAME=... puts the token in the child's environment; NAME_FILE=... writes it to
<dir>/NAME and sets NAME_FILE to that path.
"""
EXIT_CODES = """\
exit codes: the command's own (or 128+N if killed by signal N); 64 usage;
69 proxy unreachable or broken; 70 internal error (a bug); 77 refused;
78 configuration (bad reference, unknown secret, unusable --dir, ...);
126/127 command not executable / not found.
"""


class Interrupted(BaseException):
    """A stopping signal arrived during start-up (before the command ran).

    A BaseException, as KeyboardInterrupt is: the logger and every other
    `except Exception` on the start path must not swallow it (a SIGTERM that
    lands while a log line blocks on a full stderr pipe would be lost, and the
    command started anyway).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter imports shutil (~3 ms) to find the terminal width,
    and argparse builds one for every add_argument; ask the terminal directly."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        if width is None:
            try:
                width = os.get_terminal_size(sys.stdout.fileno()).columns - 2
            except (OSError, ValueError):
                width = 78
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


def _seconds(text: str) -> float:
    """A flag's number of seconds; argparse names the flag in front of the message."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more, e.g. 10 or 2.5)")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds above 0")
    return int(text)


def _on_rotate(text: str) -> RotateAction:
    try:
        return parse_on_rotate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rewrite_signal(text: str) -> tuple[int, int]:
    try:
        return parse_rewrite_signal(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _remap_exit(text: str) -> tuple[int, int]:
    try:
        return parse_remap_exit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_options(
    parser: argparse.ArgumentParser, scope: str, groups: dict[str, argparse._ArgumentGroup], only: str | None = None
) -> None:
    """The table's options of `scope` (injector/settings/options.py), each in its help group (only group `only`)."""
    parse_as = {
        "seconds": _seconds,
        "on_rotate": _on_rotate,
        "rewrite_signal": _rewrite_signal,
        "remap_exit": _remap_exit,
    }
    for option in OPTIONS:
        if option.flag is None or option.scope != scope or (only is not None and option.group != only):
            continue
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group)
        arguments: dict[str, Any] = {"help": option.help_text()}
        if option.kind == "switch":
            arguments["action"] = "store_true"
        elif option.kind == "choice":
            arguments["choices"] = option.choices
        else:
            arguments["metavar"] = option.metavar
            if option.kind in parse_as:
                arguments["type"] = parse_as[option.kind]
            if option.kind in ("append", "rewrite_signal", "remap_exit"):
                arguments["action"] = "append"
        groups[option.group].add_argument(option.flag, *option.aliases, dest=option.dest, **arguments)


def _common_options() -> argparse.ArgumentParser:
    """Options every credential-fetching mode takes.  SUPPRESS keeps a
    subcommand's defaults from overwriting values parsed before it."""
    common = _Parser(add_help=False, argument_default=argparse.SUPPRESS)
    _add_options(common, COMMON, {})
    return common


def _refresh_options(parser: argparse.ArgumentParser) -> None:
    _add_options(parser, REFRESH, {})


def _logging_options(parser: argparse.ArgumentParser) -> None:
    """Taken before or after any subcommand (`check --log-level debug` works as well)."""
    _add_options(parser, COMMON, {}, only=LOGGING)


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = _Parser(
        prog="stronghold-init",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        parents=[common],
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"stronghold-init {__version__}")
    _add_options(parser, RUN, {})
    _refresh_options(parser)

    subparsers = parser.add_subparsers(dest="mode", metavar="{" + ",".join(SUBCOMMAND_SUMMARIES) + "}")
    for name in ("check", "fetch"):
        _subcommand(subparsers, name, parents=[common], argument_default=argparse.SUPPRESS)
    sidecar = _subcommand(subparsers, "sidecar", parents=[common], argument_default=argparse.SUPPRESS)
    sidecar.add_argument("--health-listen", metavar="HOST:PORT", help="serve GET /healthz there")
    _refresh_options(sidecar)
    # SUPPRESS: a --log-level given before `dev-proxy` is not reset by its own absent one
    _dev_proxy_options(_subcommand(subparsers, "dev-proxy", argument_default=argparse.SUPPRESS))
    completion = _subcommand(subparsers, "completion", epilog=COMPLETION_EPILOG)
    completion.add_argument("shell", choices=COMPLETION_SHELLS, help="the shell to complete for")
    _audit_parser(subparsers)
    _webhook_parser(subparsers)
    return parser


# Each subcommand's one-line description: its --help and the top-level list show it.
SUBCOMMAND_SUMMARIES = {
    "check": "Resolve the configuration, log in and issue every reference, revoke at once, and show where each goes.",
    "fetch": "Write the _FILE tokens and <dir>/.ready once, then exit 0 (an init container).",
    "sidecar": "Keep _FILE tokens fresh in --dir for an app beside it, until SIGTERM.",
    "dev-proxy": "Serve the credential proxy protocol on loopback from a dotenv file of secret/path=value lines.",
    "completion": "Print a completion script for bash, zsh or fish on standard output.",
    "audit": "Show that an image holds no credential, or exactly where one hides (docs/audit.md).",
    "webhook": "A Kubernetes mutating admission webhook that injects stronghold-init into opted-in pods "
    "(docs/kubernetes.md).",
    "install": "Copy the Python-free bundle into DIR (the webhook's init container), or with --ready, "
    "exit 0 once DIR/.ready exists.",
}


def _subcommand(
    subparsers: Subparsers,
    name: str,
    *,
    parents: Sequence[argparse.ArgumentParser] = (),
    argument_default: str | None = None,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand with its summary as help and description."""
    summary = SUBCOMMAND_SUMMARIES[name]
    return subparsers.add_parser(
        name,
        help=summary,
        description=summary,
        parents=parents,
        argument_default=argument_default,
        epilog=epilog,
    )


COMPLETION_EPILOG = """\
install it (then open a new shell):
  bash: stronghold-init completion bash > ~/.local/share/bash-completion/completions/stronghold-init
  zsh:  stronghold-init completion zsh > ~/.zfunc/_stronghold-init   (with fpath+=(~/.zfunc) before compinit)
  fish: stronghold-init completion fish > ~/.config/fish/completions/stronghold-init.fish
"""


def _dev_proxy_options(dev: argparse.ArgumentParser) -> None:
    dev.add_argument("--secrets", required=True, metavar="FILE", help="dotenv file of secret/path=value lines")
    dev.add_argument(
        "--listen",
        default=DEV_PROXY_LISTEN,
        metavar="HOST:PORT",
        help=f"loopback address (port 0 picks a free one; default {DEV_PROXY_LISTEN})",
    )
    dev.add_argument(
        "--token",
        default=None,
        help="the bootstrap token to accept; visible to every local user in ps, prefer --token-file or "
        "STRONGHOLD_DEV_TOKEN (default: generated and printed)",
    )
    dev.add_argument(
        "--token-file", default=None, metavar="PATH", help="read the bootstrap token to accept from this file"
    )
    dev.add_argument(
        "--ttl",
        type=_positive_int,
        default=DEV_PROXY_TTL,
        metavar="SECONDS",
        help=f"most seconds a credential lives (default {DEV_PROXY_TTL})",
    )
    dev.add_argument(
        "--rotate",
        action="store_true",
        default=False,
        help="mint a distinct <value>.<random> token on every issue (demos, rotation tests); default: values verbatim",
    )
    _logging_options(dev)


def _audit_parser(subparsers: Subparsers) -> None:
    """docs/audit.md; the work is in injector/audit/, imported only when this mode runs."""
    audit = _subcommand(
        subparsers,
        "audit",
        epilog="every target is audited, even after one fails; the most severe exit code wins. "
        "exit codes: 0 clean; 1 findings; 64 usage; 65 malformed archive; 66 missing target; "
        "69 registry unreachable; 77 registry refused the credentials",
    )
    audit.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET",
        help="docker-archive:PATH, oci-archive:PATH, "
        "oci:DIR[:TAG], docker://HOST/REPO[:TAG|@DIGEST], dockerfile:PATH, containers-storage:NAME, "
        "docker-daemon:NAME, a path, or a local image's name",
    )
    audit.add_argument("--format", choices=("text", "json", "sarif"), default="text", help="report format")
    audit.add_argument("--platform", metavar="OS/ARCH", help="image of a multi-platform index (default this machine's)")
    audit.add_argument("--tls-verify", metavar="true|false", help="false: accept any certificate (loopback only)")
    audit.add_argument(
        "--creds", metavar="USER:PASSWORD", help="registry credentials (else REGISTRY_AUTH_FILE, ~/.docker/config.json)"
    )
    audit.add_argument("--strict", action="store_true", help="report placeholders (changeme, ${VAR}, xxx) too")
    audit.add_argument(
        "--all", action="store_true", help="audit every repository and tag of docker://HOST[:PORT][/PREFIX]"
    )
    audit.add_argument("--cache", metavar="DIR", help="keep each layer's result here; a rerun skips layers seen")
    audit.add_argument("--jobs", metavar="N", help="parallel layer downloads (default 4)")
    audit.add_argument(
        "--registry-timeout", metavar="SECONDS", help="total time one docker:// target may take (default 1800)"
    )


def _webhook_parser(subparsers: Subparsers) -> None:
    """docs/kubernetes.md; the server is injector/modes/webhook.py, imported only when it runs."""
    webhook = _subcommand(subparsers, "webhook", argument_default=argparse.SUPPRESS)
    webhook.add_argument("--listen", default="0.0.0.0:8443", metavar="HOST:PORT", help="default 0.0.0.0:8443")
    webhook.add_argument("--tls-cert", required=True, metavar="FILE", help="PEM certificate (chain); re-read on change")
    webhook.add_argument("--tls-key", required=True, metavar="FILE", help="PEM private key; re-read on change")
    webhook.add_argument(
        "--init-image", required=True, metavar="IMAGE", help="the Python-free bundle's image (stronghold-install)"
    )
    webhook.add_argument(
        "--audit", choices=("off", "warn", "enforce"), default="off", help="audit every image of a pod (SPEC 10)"
    )
    webhook.add_argument(
        "--registry-budget",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="most seconds a review waits for registries (image config, audit); default 5",
    )
    webhook.add_argument(
        "--tls-verify", metavar="true|false", help="registries: false accepts any certificate (loopback only)"
    )
    webhook.add_argument(
        "--creds", metavar="USER:PASSWORD", help="registry credentials (else REGISTRY_AUTH_FILE, ~/.docker/config.json)"
    )
    _logging_options(webhook)
    install = _subcommand(subparsers, "install")
    install.add_argument("dir", metavar="DIR", help="where to copy the bundle (e.g. /stronghold/bin)")
    install.add_argument("--ready", action="store_true", help="only check: exit 0 if DIR/.ready exists, else 1")


def parse(argv: Sequence[str]) -> tuple[str, dict[str, object], list[str]]:
    """-> (mode, options, command).  Everything after the first `--` is the command."""
    argv = list(argv)
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    else:
        command = []
    parser = build_parser()
    try:
        options = vars(parser.parse_args(argv))
    except UsageError as error:
        raise explain_usage_error(parser, argv) or error from None
    mode = str(options.pop("mode", None) or "run")
    if mode == "run" and not command:
        raise UsageError("no command given: put it after --, as in stronghold-init -- node server.js")
    if mode != "run" and command:
        raise UsageError(f"{mode} takes no command")
    if options.get("mask_output") and options.get("no_refresh"):
        raise UsageError("--mask-output keeps stronghold-init in the output path; it cannot go with --no-refresh")
    return mode, options, command


def main(argv: Sequence[str] | None = None) -> None:
    code = run_cli(sys.argv[1:] if argv is None else argv)
    # Skip interpreter shutdown: nothing is left to flush but the streams,
    # and a daemon thread mid-request must not make shutdown crash.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run_cli(argv: Sequence[str]) -> int:
    """Run and return the exit code.  The only place errors become exit codes."""
    try:
        mode, options, command = parse(argv)
        return dispatch(mode, options, command)
    except Interrupted as stop:
        log.info("stopped by a signal during start-up", signal=signal.Signals(stop.signum).name)
        return ExitCode.killed_by(stop.signum)
    except StrongholdError as exc:
        log.error(exc.message)
        return int(exc.exit_code)
    except BrokenPipeError:  # our reader went away (`... | head`): not a bug; end as SIGPIPE would, quietly
        return ExitCode.killed_by(signal.SIGPIPE)
    except Exception as exc:  # a bug: say so without a traceback that could hold a value
        log.error(f"internal error: {type(exc).__name__}; please report it (rerun with --log-level debug)")
        if log.level <= LEVELS["debug"]:
            import traceback

            log.debug("".join(traceback.format_exception_only(exc)).strip())
        return ExitCode.INTERNAL_ERROR


def _text(options: dict[str, object], key: str) -> str | None:
    """An optional string option (argparse gives None when absent)."""
    value = options.get(key)
    return value if isinstance(value, str) else None


def dispatch(mode: str, options: dict[str, object], command: list[str]) -> int:
    if mode == "audit":
        from injector.audit.main import audit

        return audit(options)
    if mode == "completion":
        return print_completion(str(options["shell"]))
    if mode == "install":
        from injector.modes.install import install, ready

        return ready(str(options["dir"])) if options.get("ready") else install(str(options["dir"]))
    if mode == "webhook":
        return _webhook(options)
    if mode == "dev-proxy":
        from injector.devproxy import serve

        log.configure(level=_text(options, "log_level"), fmt=_text(options, "log_format"))
        ttl = options["ttl"]
        return serve(
            str(options["secrets"]),
            listen=str(options["listen"]),
            token=_text(options, "token"),
            token_file=_text(options, "token_file"),
            ttl=ttl if isinstance(ttl, int) else 0,  # argparse made it an int (_positive_int)
            rotate=bool(options["rotate"]),
        )
    require_linux()
    _stop_cleanly_on_signals()
    from injector.process.prctl import make_undumpable

    make_undumpable()  # before reading anything secret: env files, token files, answers
    given = options.pop("env_file", None)
    if isinstance(given, list):
        env_files = [str(path) for path in given]
    else:  # its twin: comma-separated paths
        env_files = [p.strip() for p in os.environ.get("STRONGHOLD_ENV_FILE", "").split(",") if p.strip()]
    from injector.settings.plan import make_plan

    plan = make_plan(options, env_files)
    if mode == "check":
        from injector.modes.check import check

        return check(plan)
    if mode in ("fetch", "sidecar"):
        from injector.modes.sidecar import fetch, sidecar

        return fetch(plan) if mode == "fetch" else sidecar(plan)
    from injector.modes.run import run

    return run(plan, command)


def _webhook(options: dict[str, object]) -> int:
    from injector.audit.main import _tls_verify
    from injector.modes.webhook import WebhookOptions, serve
    from injector.serving import parse_listen

    log.configure(level=_text(options, "log_level"), fmt=_text(options, "log_format"))
    host, port = parse_listen(str(options["listen"]), "--listen")  # the one HOST:PORT parser, as dev-proxy's
    budget = options.get("registry_budget")
    return serve(
        WebhookOptions(
            host=host,
            port=port,
            cert=str(options["tls_cert"]),
            key=str(options["tls_key"]),
            init_image=str(options["init_image"]),
            audit=str(options.get("audit") or "off"),
            tls_verify=_tls_verify(options.get("tls_verify")),
            creds=_text(options, "creds"),
            budget=budget if isinstance(budget, float) else 5.0,
        )
    )


def require_linux(platform: str | None = None) -> None:
    """Credential modes need Linux: prctl (non-dumpable, subreaper), statfs for
    tmpfs, /proc.  Say so in one line (78) rather than fail later with a bug's 70."""
    platform = platform or sys.platform
    loaded = sys.modules.get("platform")  # never imported here just for this (start-up time)
    if loaded is not None and platform.startswith("linux") and loaded.system() != "Linux":
        platform = loaded.system()
    if not platform.startswith("linux"):
        raise ConfigError(
            f"stronghold-init needs Linux (prctl, statfs and tmpfs are missing on {platform}); "
            "run it in a Linux container or VM (the dev proxy and completion work anywhere)"
        )


def print_completion(shell: str) -> int:
    """The completion script, generated from the parser itself (shtab, imported only here)."""
    import shtab

    print(shtab.complete(build_parser(), shell=shell), flush=True)
    return 0


def explain_usage_error(parser: argparse.ArgumentParser, argv: Sequence[str]) -> UsageError | None:
    """A clearer message for the commonest slips, or None to keep argparse's.

    - an unknown option (argparse then misreads its value as a subcommand):
      name it and suggest the closest known one;
    - a command without `--` in front of it: show the corrected command line.
    """
    options = _option_arity(parser)
    subcommands = _subparsers(parser)
    subcommand = None
    index = 0
    while index < len(argv):
        token = argv[index]
        if token.startswith("-") and token != "-":
            flag, has_value, _ = token.partition("=")
            known = _known_option(flag, options)
            if known is None:
                import difflib

                close = difflib.get_close_matches(flag, [o for o in options if o.startswith("--")], n=1, cutoff=0.6)
                where = f" for {subcommand}" if subcommand else ""
                hint = f"; did you mean {close[0]}?" if close else "; see --help for the options"
                return UsageError(f"unrecognized arguments: {flag} is not an option{where}{hint}")
            index += 2 if options[known] and not has_value else 1
            continue
        if subcommand is None and token in subcommands:
            options, subcommand = _option_arity(subcommands[token]), token
            index += 1
            continue
        if subcommand is None:
            import shlex

            fixed = shlex.join(["stronghold-init", *argv[:index], "--", *argv[index:]])
            return UsageError(
                f"{token!r} is not a subcommand ({', '.join(SUBCOMMAND_SUMMARIES)});"
                f" to run a command, put it after --: {fixed}"
            )
        return None
    return None


def _option_arity(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """Option string -> whether it takes a value."""
    return {flag: action.nargs != 0 for action in parser._actions for flag in action.option_strings}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _known_option(flag: str, options: dict[str, bool]) -> str | None:
    """The option `flag` means: exact, or (as argparse allows) a unique prefix of a long option."""
    if flag in options:
        return flag
    if flag.startswith("--"):
        matches = [option for option in options if option.startswith(flag)]
        if len(matches) == 1:
            return matches[0]
    return None


def _stop_cleanly_on_signals() -> None:
    """During start-up, a stopping signal unwinds (so files are cleaned up)."""

    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, interrupt)
