"""`stronghold-init install DIR`: the Python-free bundle copies itself into DIR (docs/kubernetes.md).

The webhook's init container runs this from the bundle's image, so an app
image that was never rebuilt can run /stronghold/bin/stronghold-init from a
shared memory volume.  The bundle is a directory (the executable and the
libraries it loads), all of it copied, each file written under a temporary
name and renamed, so a container that starts early never runs a half-copied
binary.  DIR is opened once and written through its fd without following
symlinks.  Only the bundle can install itself: the pip-installed command is a
script that needs its Python, useless in an image without one.

`install --ready DIR` is the native sidecar's startup probe: exit 0 once
DIR/.ready exists (the sidecar wrote every file), 1 before; the bundle's
image has no shell or `test` to ask instead.
"""

from __future__ import annotations

import os
import stat
import sys

from injector.errors import ConfigError

COPY_CHUNK = 1024 * 1024


def bundle_directory() -> str | None:
    """The directory the running bundle lives in, or None when this is not the bundle."""
    # Nuitka sets __compiled__ in the modules it compiles, and a standalone build's sys.executable is
    # the bundle's own binary; under an interpreter it is python3.x (a venv's too).
    main = sys.modules.get("__main__")
    executable = os.path.realpath(sys.executable)
    if not (hasattr(main, "__compiled__") or not os.path.basename(executable).startswith("python")):
        return None
    return os.path.dirname(executable)


def ready(directory: str) -> int:
    try:
        os.stat(os.path.join(directory, ".ready"), follow_symlinks=False)
    except OSError:
        return 1
    return 0


def install(target: str, source: str | None = None) -> int:
    source = source or bundle_directory()
    if source is None:
        raise ConfigError(
            "install copies the Python-free bundle, and this is the pip-installed command; "
            "run it from the bundle's image (examples/sidecar.Dockerfile)"
        )
    try:
        os.makedirs(target, mode=0o755, exist_ok=True)
        top = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(f"install {target}: {exc.strerror}") from None
    try:
        count = _copy_tree(source, top)
    except OSError as exc:  # something in the way in DIR (a shared volume): never followed, say what
        where = f"{exc.filename}: " if isinstance(exc.filename, str) else ""
        raise ConfigError(f"install {target}: {where}{exc.strerror}; empty the directory and retry") from None
    finally:
        os.close(top)
    print(f"installed {count} files into {target}", flush=True)
    return 0


def _copy_tree(source: str, into: int) -> int:
    count = 0
    with os.scandir(source) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                try:
                    os.mkdir(entry.name, 0o755, dir_fd=into)
                except FileExistsError:
                    pass
                sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=into)
                try:
                    count += _copy_tree(entry.path, sub)
                finally:
                    os.close(sub)
            elif stat.S_ISLNK(info.st_mode):
                link = os.readlink(entry.path)
                temporary = f".{entry.name}.tmp"
                try:
                    os.unlink(temporary, dir_fd=into)
                except FileNotFoundError:
                    pass
                os.symlink(link, temporary, dir_fd=into)
                os.rename(temporary, entry.name, src_dir_fd=into, dst_dir_fd=into)
                count += 1
            elif stat.S_ISREG(info.st_mode):
                _copy_file(entry.path, entry.name, into, stat.S_IMODE(info.st_mode) & 0o755)
                count += 1
    return count


def _copy_file(path: str, name: str, into: int, mode: int) -> None:
    temporary = f".{name}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    out = os.open(temporary, flags, mode, dir_fd=into)
    try:
        with open(path, "rb") as src:
            while chunk := src.read(COPY_CHUNK):
                os.write(out, chunk)
        os.fchmod(out, mode)
    finally:
        os.close(out)
    os.rename(temporary, name, src_dir_fd=into, dst_dir_fd=into)
