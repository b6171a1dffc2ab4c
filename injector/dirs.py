"""Which directory `_FILE` tokens go to when the user did not say.

`/run/stronghold` is the container default.  On a laptop it is usually not
writable, so fall back to a per-user tmpfs directory: `$XDG_RUNTIME_DIR/stronghold`,
else `/dev/shm/stronghold-<uid>`.  Whatever is chosen is still checked to be
tmpfs by the caller.
"""

from __future__ import annotations

import os

from injector.config import DEFAULT_DIR, Settings


def _usable(path: str) -> bool:
    """Writable already, or creatable in a writable parent."""
    if os.path.isdir(path):
        return os.access(path, os.W_OK | os.X_OK)
    parent = os.path.dirname(path)
    return os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK)


def choose_directory(settings: Settings, environ: dict[str, str] | None = None) -> str:
    if settings.dir_given:
        return settings.dir
    if _usable(DEFAULT_DIR):
        return DEFAULT_DIR
    environ = os.environ if environ is None else environ
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "stronghold")
    return f"/dev/shm/stronghold-{os.getuid()}"
