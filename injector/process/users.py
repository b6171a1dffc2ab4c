"""`--user USER[:GROUP]`: who the child runs as (README: Configuration).

A name takes its uid, primary group, supplementary groups and HOME from the
user database; a numeric id with no entry uses the same number as its group,
no supplementary groups, and HOME=/ (as Docker does).  Unknown names are a
configuration error (78).
"""

from __future__ import annotations

import os
from collections import namedtuple

from injector.errors import ConfigError

# uid_t and gid_t are 32 bits; (uid_t)-1 means "no change" to setuid/chown, so it is no one's id.
MAX_ID = 2**32 - 2


def _numeric_id(text: str) -> int | None:
    """An ASCII decimal id in range, None for a name; 78 for an out-of-range number.

    str.isdigit() is true for "²" and other non-ASCII digits, which int() rejects.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    if number > MAX_ID:
        raise ConfigError(f"{text}: not a valid user or group id (0 to {MAX_ID})")
    return number


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
        user_id = _numeric_id(user)
        entry = pwd.getpwuid(user_id) if user_id is not None else pwd.getpwnam(user)
    except ConfigError as exc:
        raise ConfigError(f"--user {exc.message}") from None
    except (KeyError, ValueError):  # ValueError: a NUL in the name
        if user_id is None:
            raise ConfigError(f"--user {spec!r}: no such user") from None
        entry = None
    if entry is None:
        if user_id is None:  # a name that is not in the user database was refused above
            raise ConfigError(f"--user {spec!r}: no such user")
        uid = gid = user_id
        home = "/"
        name = None
    else:
        uid, gid, home, name = entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_name
    if group:
        try:
            group_id = _numeric_id(group)
            gid = group_id if group_id is not None else grp.getgrnam(group).gr_gid
        except ConfigError as exc:
            raise ConfigError(f"--user {exc.message}") from None
        except (KeyError, ValueError):
            raise ConfigError(f"--user {spec!r}: no such group") from None
    groups = tuple(os.getgrouplist(name, gid)) if name else (gid,)
    identity = Identity(uid, gid, groups, home or "/")
    if os.geteuid() != 0 and (uid != os.geteuid() or gid != os.getegid()):
        raise ConfigError(f"--user {spec!r}: switching users needs root")
    return identity


def resolve_group(spec: str) -> int:
    """--file-group: a group name or id -> gid (78 if unknown)."""
    import grp

    try:
        group_id = _numeric_id(spec)
    except ConfigError as exc:
        raise ConfigError(f"--file-group {exc.message}") from None
    if group_id is not None:
        return group_id
    try:
        return grp.getgrnam(spec).gr_gid
    except (KeyError, ValueError):
        raise ConfigError(f"--file-group {spec!r}: no such group") from None


def drop_privileges(identity: Identity) -> None:
    """Become `identity` for good: groups first, then gid, then uid (the order that works)."""
    os.setgroups(list(identity.groups))
    os.setgid(identity.gid)
    os.setuid(identity.uid)
