"""`stronghold-init [OPTIONS] -- COMMAND`: resolve, deliver, then exec or supervise.

resolve the command      (127/126 before any credential is asked for)
no references?           exec it: nothing of us stays running
log in, issue all        (one request; nothing delivered until all are valid)
write the _FILE tokens   (any failure removes what was written)
--no-refresh?            exec it
otherwise                supervise it and refresh until it exits,
                         then revoke, remove the files, exit with its code
"""

from __future__ import annotations

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
    if not plan.references:
        log.debug("no references; exec'ing the command")
        exec_command(command, base_env, identity)
    settings = plan.settings
    source = open_source(settings, plan.references)
    directory = prepare_directory(plan, identity)
    supervise = not settings.no_refresh
    try:
        credentials = issue_all(source, plan.references, settings)
        if supervise:
            return supervise_command(plan, command, base_env, source, directory, credentials, identity)
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
        choose_directory(settings, child_uid=uid),
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


def supervise_command(plan, command: Command, base_env, source, directory, credentials, identity) -> int:
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
            masker.add(credential.value, credential.name, credential.expires_at)
        masked = MaskedOutput(masker)
    stdio = (masked.stdout_fd, masked.stderr_fd) if masked is not None else None
    supervisor = sv.Supervisor(command, environment, grace=settings.grace, identity=identity, stdio=stdio)

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
            masker.add(credential.value, credential.name, credential.expires_at)  # before it can reach the child
        if directory is not None:
            directory.deliver(reference, credential)

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
        refresher.start()
        code = supervisor.run()
        log.debug("command exited", code=code)
    finally:
        if masked is not None:
            masked.finish()
        refresher.stop_and_revoke()
    return code


def default_on_rotate(references: list[Reference]):  # -> RotateAction
    """SPEC section 5: restart when any token is in the environment, else none."""
    from injector.config import RotateAction

    return RotateAction("restart" if any(not r.is_file for r in references) else "none")
