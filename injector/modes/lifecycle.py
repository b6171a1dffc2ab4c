"""One lifecycle for every mode that issues credentials: run, sidecar, fetch, check.

    identity  = child_identity(plan)          --user, checked before any request
    with issued(plan, identity) as session:   source opened, directory made, all issued
        ... deliver, supervise, refresh ...    (the mode's own part)
    # on the way out, however it ends: every live lease revoked, the files removed

The modes differ only in the middle; what surrounds it (and the order of the
checks before the first request) lives here once.  `session.keep()` leaves the
files and leases in place for someone else (fetch: the app after an init
container).  A command exec'd in our place keeps them too: exec never returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from injector.delivery.tokendir import TokenDirectory
from injector.log import log
from injector.refresh.ledger import Ledger
from injector.sources.wiring import open_source

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.delivery.templates import TemplateFiles
    from injector.process.users import Identity
    from injector.settings.plan import Plan
    from injector.settings.references import Credential, Reference
    from injector.settings.settings import Settings
    from injector.sources.interface import Source


class Session:
    """What the first issue produced, and what must be undone when the mode ends."""

    def __init__(
        self,
        source: Source,
        directory: TokenDirectory | None,
        credentials: list[Credential],
        template_credentials: Sequence[Credential] = (),
    ) -> None:
        self.source = source
        self.directory = directory
        self.credentials = credentials  # one per plan.references, in order
        self.template_credentials = list(template_credentials)  # one per plan.template_references
        # every lease issued from now on is recorded here, rotations too
        self.ledger = Ledger([*credentials, *template_credentials])
        self.templates: TemplateFiles | None = None  # the rendered --template files, when there are any
        self.outcome: dict[str, object] = {}  # what the mode adds to the exit line (run: exit_code)
        self._kept = False

    def keep(self) -> None:
        """Leave files and leases in place when the mode ends (they now belong to someone else)."""
        self._kept = True

    def end(self) -> None:
        """Revoke every lease not yet expired (one request), then remove the files.

        Ends with the one info line an operator reads at exit: how it ended,
        how many leases were revoked, how many files removed.
        """
        if self._kept:
            return
        revoked = removed = 0
        try:
            revoked = self.source.revoke(self.ledger.live_lease_ids(time.monotonic()))
        finally:
            if self.directory is not None:
                removed = self.directory.cleanup()
            log.info("exiting", **self.outcome, leases_revoked=revoked, files_removed=removed)


@contextmanager
def issued(plan: Plan, identity: Identity | None, *, make_directory: bool = True) -> Iterator[Session]:
    """Open the source, make the token directory, issue every reference; undo it all on the way out.

    Every check that needs no network runs before the first request (the
    source's configuration, then the directory).  A failure at any point
    after issuing revokes what was issued and removes what was written.
    """
    requested = plan.all_references  # the templates' references join the one request
    source = open_source(plan.settings, requested)
    directory = prepare_directory(plan, identity) if make_directory else None
    try:
        credentials = issue_all(source, requested, plan.settings)
    except BaseException:
        if directory is not None:
            directory.cleanup()
        raise
    count = len(plan.references)
    session = Session(source, directory, credentials[:count], credentials[count:])
    if plan.templates and directory is not None:
        from injector.delivery.templates import TemplateFiles

        session.templates = TemplateFiles(plan.templates, directory)
    try:
        yield session
    finally:
        session.end()


def child_identity(plan: Plan) -> Identity | None:
    """Who the command runs as and owns the files (--user), checked before any request."""
    if not plan.settings.user:
        return None
    from injector.process.users import resolve_user

    return resolve_user(plan.settings.user)


def prepare_directory(plan: Plan, identity: Identity | None = None) -> TokenDirectory | None:
    """The --dir for the _FILE references and templates, made and checked (None when there are none)."""
    if not plan.file_references and not plan.templates:
        return None
    from injector.delivery.dirs import choose_directory

    settings = plan.settings
    uid, gid = (identity.uid, identity.gid) if identity is not None else (-1, -1)
    if settings.file_group:
        from injector.process.users import resolve_group

        gid = resolve_group(settings.file_group)
    return TokenDirectory.prepare(
        choose_directory(settings, child_uid=uid),
        allow_disk=settings.allow_disk,
        uid=uid,
        gid=gid,
        group_readable=bool(settings.file_group),
    )


def write_files(
    directory: TokenDirectory | None, references: Sequence[Reference], credentials: list[Credential]
) -> None:
    if directory is None:
        return  # no file references
    for reference, credential in zip(references, credentials, strict=True):
        directory.deliver(reference, credential)


def render_templates(session: Session) -> None:
    """Write every --template file (start-up: an error is fatal, and the files go with the session)."""
    if session.templates is not None:
        session.templates.write_all(session.ledger.values())


def render_rotated(session: Session, names: list[str]) -> None:
    """After a rotation: render again the templates that use one of `names` (before --on-rotate acts)."""
    if session.templates is not None:
        session.templates.rotated(session.ledger.values(), names)


def issue_all(source: Source, references: Sequence[Reference], settings: Settings) -> list[Credential]:
    """Log in and issue every reference in one request, retrying transient failures."""
    from injector.errors import TransientError
    from injector.sources.transport import deadline_scope

    started = time.monotonic()
    deadline = started + settings.startup_timeout
    with deadline_scope(deadline):  # no single request may outlive --startup-timeout either
        try:  # the first attempt does not import the retry machinery
            credentials = source.issue(references)
        except TransientError as first:
            from injector.refresh.retry import retry_after_failure

            credentials = retry_after_failure(
                lambda: source.issue(references),
                first,
                deadline=deadline,
                what="fetching credentials",
                started=started,
            )
    log.info("credentials issued", count=len(credentials))
    return credentials


def on_expiry(settings: Settings, stop: Callable[[], None], stopping: str) -> Callable[[list[str]], None]:
    """The refresher's expiry callback: with --on-expiry exit, log and `stop()`; otherwise nothing.

    (The refresher itself logs every expiry; the default keeps running with
    the expired token, and /healthz says so.)
    """

    def expired(names: list[str]) -> None:
        if settings.on_expiry == "exit":
            log.error(f"token expired; {stopping} (--on-expiry exit)", names=",".join(names))
            stop()

    return expired
