"""`stronghold-init check`: prove the configuration works, show where each token goes.

Logs in, issues every reference, revokes them at once, and prints one line
per reference: its variable, env or file, and the destination.  Never a value.
The --dir is checked with the same rules `run`, `fetch` and `sidecar` apply
(`delivery.inspect_directory`), --user included, but nothing is created.
"""

from __future__ import annotations

import os
import time

from injector.delivery import inspect_directory
from injector.startup import Plan, issue_all, open_source


def check(plan: Plan) -> int:
    if not plan.references:
        print("no references found: the command would be exec'd as it is")
        return 0
    directory = None
    if plan.file_references:
        from injector.dirs import choose_directory

        child_uid = -1
        if plan.settings.user:
            from injector.users import resolve_user

            child_uid = resolve_user(plan.settings.user).uid
        directory = os.path.abspath(choose_directory(plan.settings, child_uid=child_uid))
        inspect_directory(directory, allow_disk=plan.settings.allow_disk, child_uid=child_uid)
    source = open_source(plan.settings, plan.references)
    credentials = issue_all(source, plan.references, plan.settings)
    source.revoke([c.lease_id for c in credentials if c.lease_id])
    width = max(len(r.name) for r in plan.references)
    now = time.monotonic()
    for reference, credential in zip(plan.references, credentials, strict=True):
        if reference.is_file:
            where = f"file {os.path.join(directory or '', reference.target)}"
        else:
            where = f"env  {reference.target}"
        ttl = "static" if credential.ttl is None else f"ttl {max(0, round(credential.expires_at - now))}s"
        print(f"{reference.name:<{width}}  {where}  ({reference.uri}, {ttl})")
    print(f"ok: {len(credentials)} reference(s) resolved and revoked")
    return 0
