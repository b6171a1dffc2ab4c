"""`stronghold-init check`: prove the configuration works, show where each token goes.

Logs in, issues every reference, revokes them at once, and prints one line
per reference: its variable, env or file, and the destination.  Never a value.
Each --template follows, with the reference of every placeholder and its
line; it is rendered in memory (so a render over the limit fails here too),
never written.
The --dir is checked with the same rules `run`, `fetch` and `sidecar` apply
(`delivery.inspect_directory`), --user included, but nothing is created.
"""

from __future__ import annotations

import os
import time

from injector.delivery.tokendir import inspect_directory
from injector.modes.lifecycle import issued

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.refresh.ledger import Ledger
    from injector.settings.plan import Plan


def check(plan: Plan) -> int:
    if not plan.all_references:
        print("no references found: the command would be exec'd as it is")
        return 0
    directory = None
    if plan.file_references or plan.templates:
        from injector.delivery.dirs import choose_directory

        child_uid = -1
        if plan.settings.user:
            from injector.process.users import resolve_user

            child_uid = resolve_user(plan.settings.user).uid
        directory = os.path.abspath(choose_directory(plan.settings, child_uid=child_uid))
        inspect_directory(directory, allow_disk=plan.settings.allow_disk, child_uid=child_uid)
    with issued(plan, None, make_directory=False) as session:  # revoked as the block ends
        width = max((len(r.name) for r in plan.references), default=0)
        now = time.monotonic()
        for reference, credential in zip(plan.references, session.credentials, strict=True):
            if reference.is_file:
                where = f"file {os.path.join(directory or '', reference.target)}"
            else:
                where = f"env  {reference.target}"
            print(f"{reference.name:<{width}}  {where}  ({reference.uri}, {_ttl(credential.expires_at, now)})")
        if plan.templates:
            _list_templates(plan, session.ledger, directory or "", now)
        count = len(session.credentials) + len(session.template_credentials)
    print(f"ok: {count} reference(s) resolved and revoked")
    return 0


def _ttl(expires_at: float, now: float) -> str:
    return "static" if expires_at == float("inf") else f"ttl {max(0, round(expires_at - now))}s"


def _list_templates(plan: Plan, ledger: Ledger, directory: str, now: float) -> None:
    """Each template, where it goes, and one line per placeholder: line, reference, filter.  Never a value."""
    from injector.delivery.templates import render

    by_name = {reference.name: reference for reference in plan.all_references}
    variables = {reference.name for reference in plan.references}  # not plan.environ: any name may be there
    values = ledger.values()
    for template in plan.templates:
        render(template, values)  # in memory only: what fails here would fail at start
        print(f"template {template.src}  file {os.path.join(directory, template.dest)}")
        for placeholder, name in zip(template.placeholders, template.names, strict=True):
            reference = by_name[name]
            through = f" | {placeholder.filter}" if placeholder.filter else ""
            shared = f"as {name}, " if name in variables else ""
            expiry = _ttl(ledger.current(name).expires_at, now)
            print(f"  line {placeholder.line:<4} {reference.uri}{through}  ({shared}{expiry})")
