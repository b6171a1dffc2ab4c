"""Hand credentials to the child: files on tmpfs, or its environment.

Files: the directory must be on tmpfs or ramfs (statfs), must not be a
symlink or writable by others; each token is written to a temporary file in
the same directory and renamed into place, so a reader never sees half a
token, with mode 0400, owned by the user the child runs as.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping

from injector.errors import ConfigError
from injector.references import Credential, Reference, passes_to_child

TMPFS_MAGIC = 0x01021994
RAMFS_MAGIC = 0x858458F6
MEMORY_FILESYSTEMS = (TMPFS_MAGIC, RAMFS_MAGIC)
READY_FILE = ".ready"


def filesystem_type(path: str) -> int:
    """statfs(2)'s f_type for `path` (os.statvfs does not expose it)."""
    import ctypes
    import ctypes.util

    class _StatFs(ctypes.Structure):
        # Only f_type is read; it is the first field, a long on Linux.  The
        # buffer is padded well past the real struct's size.
        _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    buffer = _StatFs()
    if libc.statfs(os.fsencode(path), ctypes.byref(buffer)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), path)
    return buffer.f_type & 0xFFFFFFFF


def _nearest_existing(path: str) -> str:
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_memory_fs(path: str, *, allow_disk: bool) -> None:
    if allow_disk:
        return
    probe = _nearest_existing(path)
    try:
        kind = filesystem_type(probe)
    except OSError as exc:
        raise ConfigError(f"--dir {path}: cannot check its file system ({exc.strerror})") from None
    if kind not in MEMORY_FILESYSTEMS:
        raise ConfigError(
            f"--dir {path} is not on tmpfs or ramfs, so tokens would reach a disk; "
            "use a memory file system (or --allow-disk)"
        )


def check_existing_dir(path: str, allowed_owners: Iterable[int]) -> None:
    """An existing --dir must be a real directory we can trust (SPEC section 3)."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"--dir {path} is a symlink; give the real directory")
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"--dir {path} exists and is not a directory")
    if info.st_mode & stat.S_IWOTH:
        raise ConfigError(f"--dir {path} is writable by other users")
    if info.st_uid not in set(allowed_owners):
        raise ConfigError(f"--dir {path} is owned by uid {info.st_uid}, not by root, this user or the child's user")


class TokenDirectory:
    """The --dir where `_FILE` tokens live, and every file written into it."""

    def __init__(
        self, path: str, *, uid: int = -1, gid: int = -1, group_readable: bool = False, created: bool = False
    ) -> None:
        self.path = path
        self.uid = uid  # owner of the files (-1: leave as the current user)
        self.gid = gid  # their group (-1: leave as is)
        self.file_mode = 0o440 if group_readable else 0o400
        self.created = created  # we made it, so cleanup removes it
        self.written: set[str] = set()

    @classmethod
    def prepare(
        cls, path: str, *, allow_disk: bool, uid: int = -1, gid: int = -1, group_readable: bool = False
    ) -> TokenDirectory:
        """Check, and create when missing, the directory (SPEC section 3).

        `group_readable` (--file-group): files 0440 and the directory 0750, for
        `gid`; otherwise 0400 and 0700, for the owner alone.
        """
        path = os.path.abspath(path)
        check_memory_fs(path, allow_disk=allow_disk)
        owners = {0, os.geteuid()} | ({uid} if uid >= 0 else set())
        created = False
        if os.path.lexists(path):
            check_existing_dir(path, owners)
        else:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.mkdir(path, 0o700)  # never wider than 0700 while it is being set up
            except OSError as exc:
                raise ConfigError(f"--dir {path}: cannot create it ({exc.strerror})") from None
            created = True
            if uid >= 0 or gid >= 0:
                os.chown(path, uid, gid)
            os.chmod(path, 0o750 if group_readable else 0o700)  # mkdir's mode is filtered by the umask
            check_memory_fs(path, allow_disk=allow_disk)
        return cls(path=path, uid=uid, gid=gid, group_readable=group_readable, created=created)

    def file_path(self, reference: Reference) -> str:
        return os.path.join(self.path, reference.target)

    def write(self, file_name: str, data: bytes) -> str:
        """Atomically put `data` at `<dir>/<file_name>`, mode 0400."""
        final = os.path.join(self.path, file_name)
        temporary = os.path.join(self.path, f".{file_name}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400)
            # 0400 until owner and group are right; only then, maybe, 0440
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.uid >= 0 or self.gid >= 0:
                    os.fchown(fd, self.uid, self.gid)
                os.fchmod(fd, self.file_mode)
            finally:
                os.close(fd)
            if os.path.isdir(final) and not os.path.islink(final):
                raise IsADirectoryError(21, "is a directory", final)
            os.replace(temporary, final)
        except OSError as exc:
            _unlink(temporary)
            # 78 like every other --dir problem; during refresh it is logged and the old token kept
            raise ConfigError(f"cannot write {final}: {exc.strerror or exc}") from None
        self.written.add(final)
        return final

    def write_credential(self, reference: Reference, credential: Credential) -> str:
        return self.write(reference.target, credential.value.encode())

    def deliver(self, reference: Reference, credential: Credential) -> None:
        """Write a file-delivered credential; env-delivered ones need no I/O."""
        if reference.is_file:
            self.write_credential(reference, credential)

    def mark_ready(self) -> None:
        self.write(READY_FILE, b"")

    def cleanup(self) -> None:
        """Remove every file written, and the directory if we created it."""
        for path in sorted(self.written):
            _unlink(path)
        self.written.clear()
        if self.created:
            try:
                os.rmdir(self.path)
            except OSError:
                pass  # something else put files there: leave it


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def scrub_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment minus configuration variables (STRONGHOLD_*, and BAO_*/VAULT_* but for
    the address, CA and namespace, SPEC section 9)."""
    return {name: value for name, value in environ.items() if passes_to_child(name)}


def child_environment(
    base: Mapping[str, str],
    references: Iterable[Reference],
    values: Mapping[str, str],
    directory: TokenDirectory | None,
) -> dict[str, str]:
    """The child's environment: `base` with each reference replaced.

    `values` maps an env-delivered reference's name to its current token.
    """
    environ = dict(base)
    for reference in references:
        if reference.is_file:
            assert directory is not None
            environ[reference.name] = directory.file_path(reference)
        else:
            environ[reference.name] = values[reference.name]
    return environ
