"""prctl(2) through ctypes: the two process flags stronghold-init sets."""

from __future__ import annotations

import os

from injector.log import log

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, value, 0, 0, 0) == 0


def make_undumpable() -> None:
    """No core dumps, no ptrace, no /proc/<pid>/environ or mem for others (README: As PID 1).

    Done before any credential is read: the initial environment block, which
    /proc/<pid>/environ shows, may hold STRONGHOLD_BOOTSTRAP_TOKEN.  execve
    resets the flag for the command, so the command itself is unaffected.
    """
    if not _prctl(PR_SET_DUMPABLE, 0):
        log.warning("could not mark the process non-dumpable")


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to us, so we can reap them."""
    if os.getpid() != 1 and not _prctl(PR_SET_CHILD_SUBREAPER, 1):
        log.warning("could not register as child subreaper; orphans will not be reaped")
