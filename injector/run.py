"""`stronghold-init [OPTIONS] -- COMMAND`: resolve, deliver, then exec or supervise.

resolve the command      (127/126 before any credential is asked for)
no references?           exec it: nothing of us stays running (as PID 1: supervise it)
log in, issue all        (one request; nothing delivered until all are valid)
write the _FILE tokens   (any failure removes what was written)
--no-refresh?            exec it (as PID 1: supervise it, without refreshing)
otherwise                supervise it and refresh until it exits,
                         then revoke, remove the files, exit with its code

As PID 1 (a container's entrypoint) stronghold-init always stays as the
parent, as tini does (SPEC section 6): an app exec'd as PID 1 reaps no
zombies and ignores SIGTERM unless it installs a handler.
"""

from __future__ import annotations

import os

from injector.delivery import TokenDirectory, child_environment, scrub_environment
from injector.errors import ExitCode
from injector.launch import Command, exec_command, resolve_command
from injector.log import log
from injector.references import Credential, Reference
from injector.startup import Plan, issue_all, open_source


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
            return supervise_command(plan, command, base_env, None, None, [], identity, refresh=False)
        log.debug("no references; exec'ing the command")
        exec_command(command, base_env, identity)
    settings = plan.settings
    source = open_source(settings, plan.references)
    directory = prepare_directory(plan, identity)
    refresh = not settings.no_refresh
    try:
        credentials = issue_all(source, plan.references, settings)
        if refresh or as_init:
            return supervise_command(plan, command, base_env, source, directory, credentials, identity, refresh=refresh)
        try:
            write_files(directory, plan.references, credentials)
            values = {c.name: c.value for c in credentials}
            exec_command(command, child_environment(base_env, plan.references, values, directory), identity)
        except BaseException:  # the command never ran: its leases are of no use to anyone
            source.revoke([c.lease_id for c in credentials if c.lease_id])
            raise
        raise AssertionError("unreachable: exec_command returns only by raising")
    finally:
        if directory is not None:
            directory.cleanup()


def child_identity(plan: Plan):  # -> users.Identity | None
    """Who the command runs as and owns the files (--user), checked before any request."""
    if not plan.settings.user:
        return None
    from injector.users import resolve_user

    return resolve_user(plan.settings.user)


def prepare_directory(plan: Plan, identity=None) -> TokenDirectory | None:
    if not plan.file_references:
        return None
    from injector.dirs import choose_directory

    settings = plan.settings
    uid, gid = (identity.uid, identity.gid) if identity is not None else (-1, -1)
    if settings.file_group:
        from injector.users import resolve_group

        gid = resolve_group(settings.file_group)
    return TokenDirectory.prepare(
        choose_directory(settings),
        allow_disk=settings.allow_disk,
        uid=uid,
        gid=gid,
        group_readable=bool(settings.file_group),
    )


def write_files(directory: TokenDirectory | None, references: list[Reference], credentials: list[Credential]) -> None:
    if directory is None:
        return  # no file references
    for reference, credential in zip(references, credentials, strict=True):
        directory.deliver(reference, credential)


def supervise_command(
    plan, command: Command, base_env, source, directory, credentials, identity, *, refresh: bool = True
) -> int:
    """Stay as the command's parent until it exits; refresh its credentials unless `refresh` is False.

    Without refreshing (PID 1 with --no-refresh or no reference) the tokens
    are delivered once, and still revoked and removed when the command exits.
    """
    from injector import supervisor as sv
    from injector.prctl import become_subreaper
    from injector.refresh import Ledger, Refresher

    settings = plan.settings
    references = plan.references
    ledger = Ledger(credentials)
    rotate = settings.on_rotate or default_on_rotate(references)

    def environment() -> dict[str, str]:
        return child_environment(base_env, references, ledger.values(), directory)

    masker = masked = None
    if settings.mask_output:
        from injector.masking import MaskedOutput, Masker

        masker = Masker()
        for credential in credentials:
            masker.add(credential.value, credential.name)
        masked = MaskedOutput(masker)
    stdio = (masked.stdout_fd, masked.stderr_fd) if masked is not None else None
    supervisor = sv.Supervisor(
        command,
        environment,
        grace=settings.grace,
        identity=identity,
        stdio=stdio,
        signal_group=settings.signal_group,
        rewrite=dict(settings.rewrite_signals),
        remap_exit=dict(settings.remap_exit),
    )

    def on_rotated(names: list[str]) -> None:
        log.info("credentials rotated", names=",".join(names), action=str(rotate))
        if rotate.kind == "restart":
            supervisor.request(sv.Restart())
        elif rotate.kind == "signal":
            supervisor.request(sv.Signal(rotate.signal))

    def on_expired(names: list[str]) -> None:
        if settings.on_expiry == "exit":
            log.error("token expired; stopping the command (--on-expiry exit)", names=",".join(names))
            supervisor.request(sv.Stop(ExitCode.UNAVAILABLE))

    def deliver(reference: Reference, credential: Credential) -> None:
        if masker is not None:
            masker.add(credential.value, credential.name)  # before it can reach the child
        if directory is not None:
            directory.deliver(reference, credential)

    refresher = None
    if refresh:
        refresher = Refresher(
            references,
            source,
            ledger,
            deliver=deliver,
            on_rotated=on_rotated,
            on_expired=on_expired,
            poll_interval=settings.vault_poll,
        )
    try:
        write_files(directory, references, credentials)
        sv.block_signals()  # before the refresher thread exists, so it inherits the mask
        become_subreaper()
        if masked is not None:
            masked.start()
        supervisor.start()
        if refresher is not None:
            refresher.start()
        code = supervisor.run()
        log.debug("command exited", code=code)
    finally:
        if masked is not None:
            masked.finish()
        if refresher is not None:
            refresher.stop_and_revoke()
        elif source is not None:
            import time

            source.revoke(ledger.live_lease_ids(time.monotonic()))
    return code


def default_on_rotate(references: list[Reference]):  # -> RotateAction
    """SPEC section 5: restart when any token is in the environment, else none."""
    from injector.config import RotateAction

    return RotateAction("restart" if any(not r.is_file for r in references) else "none")
