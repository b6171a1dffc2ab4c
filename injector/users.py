"""`--user USER[:GROUP]`: who the child runs as (SPEC section 3).

A name takes its uid, primary group, supplementary groups and HOME from the
user database; a numeric id with no entry uses the same number as its group,
no supplementary groups, and HOME=/ (as Docker does).  Unknown names are a
configuration error (78).
"""

from __future__ import annotations

import os
from collections import namedtuple

from injector.errors import ConfigError


class Identity(namedtuple("Identity", "uid gid groups home")):
    """uid, gid, supplementary groups (tuple of gids), and HOME for the child."""

    __slots__ = ()


def resolve_user(spec: str) -> Identity:
    import grp
    import pwd

    user, _, group = spec.partition(":")
    if not user:
        raise ConfigError(f"--user {spec!r}: no user given")
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if not user.isdigit():
            raise ConfigError(f"--user {spec!r}: no such user") from None
        entry = None
    if entry is None:
        uid = gid = int(user)
        home = "/"
        name = None
    else:
        uid, gid, home, name = entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_name
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"--user {spec!r}: no such group") from None
    groups = tuple(os.getgrouplist(name, gid)) if name else (gid,)
    identity = Identity(uid, gid, groups, home or "/")
    if os.geteuid() != 0 and (uid != os.geteuid() or gid != os.getegid()):
        raise ConfigError(f"--user {spec!r}: switching users needs root")
    return identity


def resolve_group(spec: str) -> int:
    """--file-group: a group name or id -> gid (78 if unknown)."""
    import grp

    if spec.isdigit():
        return int(spec)
    try:
        return grp.getgrnam(spec).gr_gid
    except KeyError:
        raise ConfigError(f"--file-group {spec!r}: no such group") from None


def drop_privileges(identity: Identity) -> None:
    """Become `identity` for good: groups first, then gid, then uid (the order that works)."""
    os.setgroups(list(identity.groups))
    os.setgid(identity.gid)
    os.setuid(identity.uid)
