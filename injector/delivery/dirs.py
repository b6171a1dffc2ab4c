"""Which directory `_FILE` tokens go to when the user did not say.

`/run/stronghold` is the container default.  On a laptop (or in a container
whose /run is not tmpfs) it is usually unusable, so fall back to a per-user
tmpfs directory: `$XDG_RUNTIME_DIR/stronghold`, else `/dev/shm/stronghold-<uid>`.
A candidate is taken only if it passes the checks `TokenDirectory.prepare`
makes (owner, mode, memory file system) and is writable or creatable.

The choice and the reason are logged.  As PID 1 (a container's entrypoint)
/dev/shm is never used unasked: with `--ipc=host` it is the host's, where a
token would outlive the container.  If no candidate is usable the error
names each one and why it was skipped.  An explicit --dir is always used as
given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from injector.delivery.tokendir import (
    MEMORY_FILESYSTEMS,
    directory_problem,
    filesystem_type,
    parent_problem,
    tmpfs_fix,
)
from injector.errors import ConfigError
from injector.log import log
from injector.settings.options import DEFAULT_DIR
from injector.settings.settings import Settings


def skip_reason(path: str, child_uid: int = -1) -> str | None:
    """Why `path` cannot hold the tokens, or None when it can."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        return f"cannot be checked ({exc.strerror})"
    if info is not None:
        problem = directory_problem(info, child_uid)
        if problem:
            return problem
        probe = path
    else:
        probe = os.path.dirname(path)
        if not os.path.isdir(probe):
            return f"its parent {probe} does not exist"
        problem = parent_problem(os.stat(probe))
        if problem:
            return f"its parent {probe} {problem}"
    if not os.access(probe, os.W_OK | os.X_OK):
        return (
            "is not writable by this user" if info is not None else f"its parent {probe} is not writable by this user"
        )
    try:
        if filesystem_type(probe) not in MEMORY_FILESYSTEMS:
            return "is not on tmpfs or ramfs"
    except OSError as exc:
        return f"cannot check its file system ({exc.strerror})"
    return None


def candidates(environ: Mapping[str, str]) -> list[str]:
    paths = [DEFAULT_DIR]
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        paths.append(os.path.join(runtime, "stronghold"))
    if os.getpid() != 1:
        paths.append(f"/dev/shm/stronghold-{os.getuid()}")
    return paths


def container_fix() -> str:
    return f"{tmpfs_fix(DEFAULT_DIR)} or give --dir explicitly"


def choose_directory(settings: Settings, environ: Mapping[str, str] | None = None, child_uid: int = -1) -> str:
    """The --dir to use; logs which default was taken and why; 78 naming every candidate when none is usable."""
    if settings.dir_given:
        return settings.dir
    skipped: list[str] = []
    for path in candidates(os.environ if environ is None else environ):
        reason = skip_reason(path, child_uid)
        if reason is None:
            if skipped:
                log.info(f"token files go to {path}", skipped="; ".join(skipped))
            else:
                log.info(f"token files go to {path}")
            return path
        skipped.append(f"{path} {reason}")
    if os.getpid() == 1:
        raise ConfigError(
            f"no usable directory for _FILE tokens: {'; '.join(skipped)}. As PID 1 (a container) "
            f"/dev/shm is not used unless asked: {container_fix()}"
        )
    raise ConfigError(
        f"no usable directory for _FILE tokens: {'; '.join(skipped)}; give --dir on a tmpfs this user can write"
    )
