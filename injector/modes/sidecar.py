"""`fetch` (one-shot, for init containers) and `sidecar` (keep files fresh).

Both take `_FILE` references only: there is no child whose environment
could receive a token.  `<dir>/.ready` is created only once every file is
in place.
"""

from __future__ import annotations

import signal
import threading

from injector.errors import ConfigError, ExitCode
from injector.log import log
from injector.modes.lifecycle import child_identity, issued, on_expiry, render_rotated, render_templates, write_files
from injector.process.wake import WAKE, main_thread_id, wake
from injector.refresh.refresher import Refresher

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.delivery.tokendir import TokenDirectory
    from injector.settings.plan import Plan

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _file_references_only(plan: Plan, mode: str) -> None:
    if plan.env_references:
        names = ", ".join(r.name for r in plan.env_references)
        raise ConfigError(f"{names}: {mode} delivers files only; name the variable NAME_FILE")
    if not plan.all_references:
        raise ConfigError(f"{mode}: no NAME_FILE=stronghold://... reference (or --template) found in the environment")


def fetch(plan: Plan) -> int:
    """Write every file and <dir>/.ready, leave them in place, exit 0."""
    _file_references_only(plan, "fetch")
    with issued(plan, child_identity(plan)) as session:
        write_files(session.directory, plan.references, session.credentials)
        render_templates(session)
        directory = _directory(session.directory)
        directory.mark_ready()
        session.keep()  # the files and their leases are the app's now
    log.info("files written", dir=directory.path, count=len(session.credentials) + len(plan.templates))
    return 0


def sidecar(plan: Plan) -> int:
    """Keep the files fresh until SIGTERM or SIGINT; then revoke, remove them, exit 0."""
    _file_references_only(plan, "sidecar")
    settings = plan.settings
    # Bound now, so a bad or busy address fails before any credential is issued;
    # served once the files are in place.
    health = None
    if settings.health_listen:
        from injector.modes.health import bind_health

        health = bind_health(settings.health_listen)
    expired_exit = threading.Event()
    main_thread = main_thread_id()

    def stop_on_expiry() -> None:
        expired_exit.set()
        wake(main_thread)

    try:
        with issued(plan, child_identity(plan)) as session:
            directory = _directory(session.directory)

            def on_rotated(names: list[str]) -> None:
                render_rotated(session, names)
                log.info("files rotated", names=",".join(names))

            refresher = Refresher(
                plan.all_references,
                session.source,
                session.ledger,
                deliver=directory.deliver,
                on_rotated=on_rotated,
                on_expired=on_expiry(settings, stop_on_expiry, "stopping"),
                poll_interval=settings.vault_poll,
            )
            try:
                write_files(directory, plan.references, session.credentials)
                render_templates(session)
                directory.mark_ready()
                # Blocked before any thread starts, so only this thread takes them.
                signal.pthread_sigmask(signal.SIG_BLOCK, {*STOP_SIGNALS, WAKE})
                if health is not None:
                    health.serve(session.ledger)
                refresher.start()
                log.info("sidecar ready", dir=directory.path, count=len(session.credentials) + len(plan.templates))
                received = _wait_for_stop(expired_exit)
                log.info("stopping", signal=signal.Signals(received.si_signo).name)
            finally:
                refresher.stop()
    finally:
        if health is not None:
            health.close()
    return ExitCode.UNAVAILABLE if expired_exit.is_set() else 0


def _wait_for_stop(expired_exit: threading.Event) -> signal.struct_siginfo:
    """The stop signal, or our own wake-up after an expiry; an outside WAKE (SIGRTMIN) is not a stop.

    As the supervisor does, the sender is checked: only this process sends
    WAKE with its own pid (a sender outside our PID namespace shows as 0).
    """
    import os

    while True:
        received = signal.sigwaitinfo({*STOP_SIGNALS, WAKE})
        if received.si_signo != WAKE or (received.si_pid == os.getpid() and expired_exit.is_set()):
            return received
        log.debug("ignoring a SIGRTMIN from another process", pid=received.si_pid)


def _directory(directory: TokenDirectory | None) -> TokenDirectory:
    if directory is None:  # _file_references_only made sure there are file references
        raise ConfigError("no NAME_FILE reference or --template: nothing to write")
    return directory
