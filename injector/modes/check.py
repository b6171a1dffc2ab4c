"""`stronghold-init check`: prove the configuration works, show where each token goes.

Logs in, issues every reference, revokes them at once, and prints one line
per reference: its variable, env or file, and the destination.  Never a value.
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
    from injector.settings.plan import Plan


def check(plan: Plan) -> int:
    if not plan.references:
        print("no references found: the command would be exec'd as it is")
        return 0
    directory = None
    if plan.file_references:
        from injector.delivery.dirs import choose_directory

        child_uid = -1
        if plan.settings.user:
            from injector.process.users import resolve_user

            child_uid = resolve_user(plan.settings.user).uid
        directory = os.path.abspath(choose_directory(plan.settings, child_uid=child_uid))
        inspect_directory(directory, allow_disk=plan.settings.allow_disk, child_uid=child_uid)
    with issued(plan, None, make_directory=False) as session:  # revoked as the block ends
        width = max(len(r.name) for r in plan.references)
        now = time.monotonic()
        for reference, credential in zip(plan.references, session.credentials, strict=True):
            if reference.is_file:
                where = f"file {os.path.join(directory or '', reference.target)}"
            else:
                where = f"env  {reference.target}"
            ttl = "static" if credential.ttl is None else f"ttl {max(0, round(credential.expires_at - now))}s"
            print(f"{reference.name:<{width}}  {where}  ({reference.uri}, {ttl})")
        count = len(session.credentials)
    print(f"ok: {count} reference(s) resolved and revoked")
    return 0
