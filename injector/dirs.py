"""Which directory `_FILE` tokens go to when the user did not say.

`/run/stronghold` is the container default.  On a laptop (or in a container
whose /run is not tmpfs) it is usually unusable, so fall back to a per-user
tmpfs directory: `$XDG_RUNTIME_DIR/stronghold`, else `/dev/shm/stronghold-<uid>`.
A candidate is taken only if it is writable (or creatable) and on a memory
file system; if none is, the default is returned and fails its check with a
clear message.  An explicit --dir is always used as given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from injector.config import DEFAULT_DIR, Settings
from injector.delivery import MEMORY_FILESYSTEMS, filesystem_type


def _usable(path: str) -> bool:
    """Writable already, or creatable in a writable parent, and in memory."""
    probe = path if os.path.isdir(path) else os.path.dirname(path)
    if not (os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)):
        return False
    try:
        return filesystem_type(probe) in MEMORY_FILESYSTEMS
    except OSError:
        return False


def candidates(environ: Mapping[str, str]) -> list[str]:
    paths = [DEFAULT_DIR]
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(os.path.join(runtime, "stronghold"))
    paths.append(f"/dev/shm/stronghold-{os.getuid()}")
    return paths


def choose_directory(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    if settings.dir_given:
        return settings.dir
    for path in candidates(os.environ if environ is None else environ):
        if _usable(path):
            return path
    return DEFAULT_DIR
