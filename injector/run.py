"""`stronghold-init [OPTIONS] -- COMMAND`: resolve, deliver, then exec or supervise.

resolve the command      (127/126 before any credential is asked for)
no references?           exec it: nothing of us stays running (as PID 1: supervise it)
log in, issue all        (one request; nothing delivered until all are valid)
write the _FILE tokens   (any failure removes what was written)
--no-refresh?            exec it (as PID 1: supervise it, without refreshing)
otherwise                supervise it and refresh until it exits,
                         then revoke, remove the files, exit with its code

As PID 1 (a container's entrypoint) stronghold-init always stays as the
parent, as tini does (README: As PID 1): an app exec'd as PID 1 reaps no
zombies and ignores SIGTERM unless it installs a handler.

Issuing, revoking and removing files is `lifecycle`'s; this module decides
between exec and supervision and wires the supervisor to the refresher.
"""

from __future__ import annotations

import os

from injector.delivery import child_environment, scrub_environment
from injector.errors import ExitCode
from injector.launch import Command, exec_command, resolve_command
from injector.lifecycle import Session, child_identity, issued, on_expiry, write_files
from injector.log import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.config import RotateAction
    from injector.plan import Plan
    from injector.references import Credential, Reference
    from injector.refresh import Refresher
    from injector.supervisor import Supervisor
    from injector.users import Identity


def run(plan: Plan, argv: list[str]) -> int:
    identity = child_identity(plan)
    base_env = scrub_environment(plan.environ)
    if identity is not None:
        base_env["HOME"] = identity.home
    command = resolve_command(argv, base_env)
    as_init = os.getpid() == 1
    if not plan.references:
        if as_init:
            log.debug("no references; supervising the command as PID 1")
            return supervise_command(plan, command, base_env, None, identity, refresh=False)
        log.debug("no references; exec'ing the command")
        exec_command(command, base_env, identity)
    refresh = not plan.settings.no_refresh
    with issued(plan, identity) as session:
        if refresh or as_init:
            return supervise_command(plan, command, base_env, session, identity, refresh=refresh)
        write_files(session.directory, plan.references, session.credentials)
        values = {c.name: c.value for c in session.credentials}
        environment = child_environment(base_env, plan.references, values, session.directory)
        # exec replaces this process, files and leases are the command's from then on; if it
        # fails instead, leaving the block revokes and removes them: nobody can use them.
        exec_command(command, environment, identity)
    raise AssertionError("unreachable: exec_command returns only by raising")


def supervise_command(
    plan: Plan,
    command: Command,
    base_env: dict[str, str],
    session: Session | None,
    identity: Identity | None,
    *,
    refresh: bool = True,
) -> int:
    """Stay as the command's parent until it exits; refresh its credentials unless `refresh` is False.

    Without refreshing (PID 1 with --no-refresh or no reference) the tokens
    are delivered once; the session revokes and removes them when the command exits.
    """
    from injector import supervisor as sv
    from injector.prctl import become_subreaper

    settings = plan.settings
    references = plan.references
    directory = session.directory if session is not None else None
    credentials = session.credentials if session is not None else []

    def environment() -> dict[str, str]:
        values = session.ledger.values() if session is not None else {}
        return child_environment(base_env, references, values, directory)

    masking = _OutputMasking(credentials) if settings.mask_output else None
    supervisor = sv.Supervisor(
        command,
        environment,
        grace=settings.grace,
        identity=identity,
        stdio=masking.stdio if masking is not None else None,
        signal_group=settings.signal_group,
        rewrite=dict(settings.rewrite_signals),
        remap_exit=dict(settings.remap_exit),
    )
    refresher = None
    if refresh and session is not None:
        refresher = _refresher(plan, session, supervisor, masking)
    try:
        write_files(directory, references, credentials)
        sv.block_signals()  # before the refresher thread exists, so it inherits the mask
        become_subreaper()
        if masking is not None:
            masking.output.start()
        supervisor.start()
        if refresher is not None:
            refresher.start()
        code = supervisor.run()
        log.debug("command exited", code=code)
        if session is not None:
            session.outcome["exit_code"] = code  # the session's end logs the exit line
        else:
            log.info("exiting", exit_code=code)
    finally:
        if masking is not None:
            masking.output.finish()
        if refresher is not None:
            refresher.stop()
    return code


class _OutputMasking:
    """--mask-output: the masker, fed every value before the command can see it, and the pipes it reads."""

    def __init__(self, credentials: list[Credential]) -> None:
        from injector.masking import MaskedOutput, Masker

        self.masker = Masker()
        self._warned: set[str] = set()
        for credential in credentials:
            self.add(credential)
        self.output = MaskedOutput(self.masker)
        self.stdio = (self.output.stdout_fd, self.output.stderr_fd)

    def add(self, credential: Credential) -> None:
        masked = self.masker.add(credential.value, credential.name, credential.expires_at)
        if not masked and credential.name not in self._warned:  # once per variable, not at every refresh
            self._warned.add(credential.name)
            from injector.masking import MIN_MASKED_LENGTH

            log.warning(
                f"--mask-output: the value of {credential.name} is shorter than {MIN_MASKED_LENGTH} characters "
                "and is not masked (masking every such character would reveal it)",
                name=credential.name,
            )


def _refresher(plan: Plan, session: Session, supervisor: Supervisor, masking: _OutputMasking | None) -> Refresher:
    """The refresher thread for `run`: new values delivered, then the command restarted or signalled."""
    from injector import supervisor as sv
    from injector.refresh import Refresher

    settings = plan.settings
    rotate = settings.on_rotate or default_on_rotate(plan.references)

    def on_rotated(names: list[str]) -> None:
        log.info("credentials rotated", names=",".join(names), action=str(rotate))
        if rotate.kind == "restart":
            supervisor.request(sv.Restart())
        elif rotate.kind == "signal":
            supervisor.request(sv.Signal(rotate.signal))

    def deliver(reference: Reference, credential: Credential) -> None:
        if masking is not None:
            masking.add(credential)  # before it can reach the command
        if session.directory is not None:
            session.directory.deliver(reference, credential)

    return Refresher(
        plan.references,
        session.source,
        session.ledger,
        deliver=deliver,
        on_rotated=on_rotated,
        on_expired=on_expiry(
            settings, lambda: supervisor.request(sv.Stop(ExitCode.UNAVAILABLE)), "stopping the command"
        ),
        poll_interval=settings.vault_poll,
    )


def default_on_rotate(references: list[Reference]) -> RotateAction:
    """README (rotation): restart when any token is in the environment, else none."""
    from injector.config import RotateAction

    return RotateAction("restart" if any(not r.is_file for r in references) else "none")
