"""Hand credentials to the child: files on tmpfs, or its environment.

Files: the directory must be on tmpfs or ramfs (statfs), must not be a
symlink or writable by anyone but its owner; each token is written to a
temporary file in the same directory and renamed into place, so a reader
never sees half a token, with mode 0400, owned by the user the child runs as.

The directory is opened once (`O_DIRECTORY|O_NOFOLLOW`) and checked with
`fstat` on that descriptor; every later open, rename, unlink, fchown and
fchmod is relative to it.  The child's user owns the directory, so it can
rename it away and put a symlink in its place: root's writes and deletes
still land in the directory that was checked, never where the symlink points.
A new directory is opened right after mkdir and checked on that descriptor
(ours, 0700, empty) before it is chowned, so someone who can write the
parent cannot swap in another file or directory for root to chown.
"""

from __future__ import annotations

import os
import stat

from injector.errors import ConfigError
from injector.settings.references import Credential, Reference

TMPFS_MAGIC = 0x01021994


RAMFS_MAGIC = 0x858458F6


MEMORY_FILESYSTEMS = (TMPFS_MAGIC, RAMFS_MAGIC)


READY_FILE = ".ready"


_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _statfs_type(call: str, target: object) -> int:
    import ctypes

    class _StatFs(ctypes.Structure):
        # Only f_type is read; it is the first field, a long on Linux.  The
        # buffer is padded well past the real struct's size.
        _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]

    # CDLL(None): the libc this process already runs on.  Never
    # ctypes.util.find_library, which may run gcc or ld from PATH with our
    # whole environment (credentials included) when ldconfig is missing.
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = _StatFs()
    if getattr(libc, call)(target, ctypes.byref(buffer)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return buffer.f_type & 0xFFFFFFFF


def filesystem_type(path: str) -> int:
    """statfs(2)'s f_type for `path` (os.statvfs does not expose it)."""
    return _statfs_type("statfs", os.fsencode(path))


def fd_filesystem_type(fd: int) -> int:
    """fstatfs(2)'s f_type for an open descriptor."""
    return _statfs_type("fstatfs", fd)


def allowed_owners(child_uid: int = -1) -> set[int]:
    """Who may own an existing --dir: root, this user, the child's user.  Every mode uses this one rule."""
    return {0, os.geteuid()} | ({child_uid} if child_uid >= 0 else set())


def _mode_problem(info: os.stat_result) -> str | None:
    if info.st_mode & stat.S_IWOTH:
        return "is writable by other users"
    if info.st_mode & stat.S_IWGRP:
        return "is writable by its group"
    return None


def directory_problem(info: os.stat_result, child_uid: int = -1) -> str | None:
    """Why an existing --dir (its lstat/fstat) cannot be trusted, or None (README: Configuration)."""
    if stat.S_ISLNK(info.st_mode):
        return "is a symlink; give the real directory"
    if not stat.S_ISDIR(info.st_mode):
        return "exists and is not a directory"
    problem = _mode_problem(info)
    if problem:
        return problem
    if info.st_uid not in allowed_owners(child_uid):
        return f"is owned by uid {info.st_uid}, not by root, this user or the child's user"
    return None


def parent_problem(info: os.stat_result) -> str | None:
    """Why a directory must not be created in this parent, or None.

    Someone else who can write the parent could swap our new directory for
    another between mkdir and chown.  A root-owned sticky parent (/dev/shm,
    /tmp) is fine: there only an entry's owner may rename it.
    """
    shared = info.st_uid not in (0, os.geteuid()) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if shared and not (info.st_uid == 0 and info.st_mode & stat.S_ISVTX):
        return (
            f"can be written by others (uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}), so they could "
            "swap the new directory; create it beforehand, or use a parent only root can write or a root-owned "
            "sticky one"
        )
    return None


def tmpfs_fix(path: str) -> str:
    """How to give a container a memory file system at `path`, for podman and docker."""
    uid, gid = os.geteuid(), os.getegid()
    return (
        f"mount a tmpfs there (podman: --tmpfs {path}:mode=0700,U; docker: --tmpfs "
        f"{path}:uid={uid},gid={gid},mode=0700)"
    )


def _not_memory_fs(path: str) -> str:
    advice = "use a memory file system (or --allow-disk)"
    if os.getpid() == 1:  # a container's entrypoint: the fix is a line of its run command
        advice = f"{tmpfs_fix(path)}, or --allow-disk"
    return f"is not on tmpfs or ramfs, so tokens would reach a disk; {advice}"


def _memory_fs_problem(fd: int, path: str) -> str | None:
    try:
        kind = fd_filesystem_type(fd)
    except OSError as exc:
        return f"cannot check its file system ({exc.strerror})"
    if kind not in MEMORY_FILESYSTEMS:
        return _not_memory_fs(path)
    return None


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
        raise ConfigError(f"--dir {path} {_not_memory_fs(path)}")


def inspect_directory(path: str, *, allow_disk: bool, child_uid: int = -1) -> None:
    """The checks `TokenDirectory.prepare` makes, without creating or changing anything (`check`)."""
    path = os.path.abspath(path)
    check_memory_fs(path, allow_disk=allow_disk)
    if os.path.lexists(path):
        problem = directory_problem(os.lstat(path), child_uid)
        if problem:
            raise ConfigError(f"--dir {path} {problem}")


def _close(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _open_parent(parent: str) -> int:
    """The parent of a --dir to create (made when missing).

    A parent others can write (a Kubernetes emptyDir's root is 0777) is used,
    but said: they cannot make us chown anything else (the new directory is
    checked on its descriptor before fchown), yet they can rename it later.
    """
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o755, exist_ok=True)
    # Ancestors may be symlinks (/var/run -> /run); only the last component must not be.
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        problem = parent_problem(os.fstat(fd))
    except OSError:
        os.close(fd)
        raise
    if problem:
        from injector.log import log

        log.info(f"--dir's parent {parent} {problem.split(';')[0]}; a sticky parent (chmod +t) prevents that")
    return fd


class TokenDirectory:
    """The --dir where `_FILE` tokens live, held open, and every file written into it."""

    def __init__(
        self,
        path: str,
        fd: int,
        *,
        uid: int = -1,
        gid: int = -1,
        group_readable: bool = False,
        parent_fd: int | None = None,
    ) -> None:
        self.path = path
        self.fd = fd  # every operation is relative to this descriptor, never to `path`
        self.uid = uid  # owner of the files (-1: leave as the current user)
        self.gid = gid  # their group (-1: leave as is)
        self.file_mode = 0o440 if group_readable else 0o400
        self.parent_fd = parent_fd  # set when we created it, so cleanup removes it
        info = os.fstat(fd)
        self._identity = (info.st_dev, info.st_ino)
        self.written: set[str] = set()  # file names inside the directory

    @property
    def created(self) -> bool:
        return self.parent_fd is not None

    @classmethod
    def prepare(
        cls, path: str, *, allow_disk: bool, uid: int = -1, gid: int = -1, group_readable: bool = False
    ) -> TokenDirectory:
        """Check, and create when missing, the directory (README: Configuration).

        `group_readable` (--file-group): files 0440 and the directory 0750, for
        `gid`; otherwise 0400 and 0700, for the owner alone.
        """
        path = os.path.abspath(path)
        check_memory_fs(path, allow_disk=allow_disk)
        try:
            fd = os.open(path, _OPEN_DIR)
        except FileNotFoundError:
            return cls._create(path, allow_disk=allow_disk, uid=uid, gid=gid, group_readable=group_readable)
        except OSError as exc:
            try:
                problem = directory_problem(os.lstat(path), uid)
            except OSError:
                problem = None
            raise ConfigError(
                f"--dir {path} {problem}" if problem else f"--dir {path}: cannot open it ({exc.strerror})"
            ) from None
        try:
            problem = directory_problem(os.fstat(fd), uid) or (None if allow_disk else _memory_fs_problem(fd, path))
            if problem:
                raise ConfigError(f"--dir {path} {problem}")
            return cls(path, fd, uid=uid, gid=gid, group_readable=group_readable)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def _create(cls, path: str, *, allow_disk: bool, uid: int, gid: int, group_readable: bool) -> TokenDirectory:
        name = os.path.basename(path)
        parent_fd = fd = None
        try:
            parent_fd = _open_parent(os.path.dirname(path))
            if not allow_disk:
                problem = _memory_fs_problem(parent_fd, path)
                if problem:
                    raise ConfigError(f"--dir {path} {problem}")
            os.mkdir(name, 0o700, dir_fd=parent_fd)  # never wider than 0700 while it is being set up
            fd = os.open(name, _OPEN_DIR, dir_fd=parent_fd)
            info = os.fstat(fd)
            if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077 or info.st_nlink != 2:
                raise ConfigError(f"--dir {path} was replaced while it was being created; refusing to use it")
            if uid >= 0 or gid >= 0:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o750 if group_readable else 0o700)  # mkdir's mode is filtered by the umask
            directory = cls(path, fd, uid=uid, gid=gid, group_readable=group_readable, parent_fd=parent_fd)
        except ConfigError:
            _close(fd)
            _close(parent_fd)
            raise
        except OSError as exc:
            _close(fd)
            _close(parent_fd)
            raise ConfigError(f"--dir {path}: cannot create it ({exc.strerror})") from None
        return directory

    def file_path(self, reference: Reference) -> str:
        return os.path.join(self.path, reference.target)

    def write(self, file_name: str, data: bytes) -> str:
        """Atomically put `data` at `<dir>/<file_name>`, mode 0400, all relative to the open directory."""
        final = os.path.join(self.path, file_name)
        temporary = f".{file_name}.{os.urandom(6).hex()}.tmp"
        created = False
        try:
            fd = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o400,
                dir_fd=self.fd,
            )
            created = True
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
            try:
                if stat.S_ISDIR(os.stat(file_name, dir_fd=self.fd, follow_symlinks=False).st_mode):
                    raise IsADirectoryError(21, "is a directory", final)
            except FileNotFoundError:
                pass
            os.replace(temporary, file_name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException as exc:
            if created:  # a temporary file holding the token is never left behind, whatever failed
                self._unlink(temporary)
            if not isinstance(exc, (OSError, ValueError, OverflowError)):
                raise
            # 78 like every other --dir problem; during refresh it is logged and the old token kept
            raise ConfigError(f"cannot write {final}: {getattr(exc, 'strerror', None) or exc}") from None
        self.written.add(file_name)
        return final

    def write_credential(self, reference: Reference, credential: Credential) -> str:
        return self.write(reference.target, credential.value.encode())

    def deliver(self, reference: Reference, credential: Credential) -> None:
        """Write a file-delivered credential; env-delivered ones need no I/O."""
        if reference.is_file:
            self.write_credential(reference, credential)

    def mark_ready(self) -> None:
        self.write(READY_FILE, b"")

    def cleanup(self) -> int:
        """Remove every file written, and the directory if we created it (never anything elsewhere).

        -> how many files were removed."""
        if self.fd < 0:
            return 0
        removed = sum(self._unlink(name) for name in sorted(self.written))
        self.written.clear()
        if self.parent_fd is not None:
            name = os.path.basename(self.path)
            try:
                info = os.stat(name, dir_fd=self.parent_fd, follow_symlinks=False)
                if (info.st_dev, info.st_ino) == self._identity:  # still ours, not a swapped-in one
                    os.rmdir(name, dir_fd=self.parent_fd)
            except OSError:
                pass  # moved away, or something else put files there: leave it
            _close(self.parent_fd)
            self.parent_fd = None
        _close(self.fd)
        self.fd = -1
        return removed

    def _unlink(self, name: str) -> bool:
        try:
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            return False
        return True
