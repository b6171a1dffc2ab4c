"""Start the command: find it, then exec it or spawn it with clean signal state.

The child must start with an empty signal mask and default dispositions
(README: As PID 1).  `os.posix_spawn` cannot promise that here: glibc 2.36
leaves its internal signals 32 and 33 ignored in the child, which shows in
the child's SigIgn.  So the child is forked and resets everything itself
before execve, using only calls that take no lock another thread could hold.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
from collections import namedtuple
from collections.abc import Mapping, Sequence

from injector.errors import CommandError, ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from injector.process.users import Identity

# Every signal a child could inherit as ignored or caught, bar the two that
# cannot be changed and glibc's internal ones (32, 33).
_RESETTABLE = tuple(
    sorted(
        s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP) and not 32 <= s < signal.SIGRTMIN
    )
)


class Command(namedtuple("Command", "path argv")):
    """path: the resolved executable; argv: the command line, argv[0] as the user gave it."""

    __slots__ = ()


def resolve_command(argv: Sequence[str], environ: Mapping[str, str]) -> Command:
    """Find argv[0] on the child's PATH, as execvp would: 127 if absent, 126 if not executable."""
    if not argv or not argv[0]:
        raise CommandError("no command given", ExitCode.USAGE)
    name = argv[0]
    if "/" in name:
        candidates = [name]
    else:
        search = environ.get("PATH", os.defpath).split(os.pathsep)
        candidates = [os.path.join(directory or ".", name) for directory in search]
    found_unexecutable = None
    for candidate in candidates:
        try:
            info = os.stat(candidate)
        except PermissionError:  # as execvp: EACCES on the way means 126, not 127
            found_unexecutable = found_unexecutable or candidate
            continue
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and os.access(candidate, os.X_OK):
            return Command(path=candidate, argv=tuple(argv))
        found_unexecutable = found_unexecutable or candidate
    if found_unexecutable:
        raise CommandError(f"{name}: permission denied (not executable)", ExitCode.NOT_EXECUTABLE)
    raise CommandError(f"{name}: command not found", ExitCode.NOT_FOUND)


def exec_error(name: str, exc: OSError) -> CommandError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return CommandError(f"{name}: command not found", ExitCode.NOT_FOUND)
    return CommandError(f"{name}: cannot execute ({exc.strerror})", ExitCode.NOT_EXECUTABLE)


def reset_signals() -> None:
    """Default dispositions and an empty mask, as a freshly started program expects."""
    for signum in _RESETTABLE:
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def exec_command(command: Command, environ: Mapping[str, str], identity: Identity | None = None) -> NoReturn:
    """Replace this process with the command (never returns).

    `identity` (users.Identity) drops to that user first; None keeps ours.
    """
    reset_signals()
    try:
        if identity is not None:
            from injector.process.users import drop_privileges

            drop_privileges(identity)
        os.execve(command.path, list(command.argv), dict(environ))
    except OSError as exc:
        raise exec_error(command.argv[0], exc) from None


def spawn(
    command: Command,
    environ: Mapping[str, str],
    identity: Identity | None = None,
    stdio: tuple[int, int] | None = None,
    *,
    new_group: bool = False,
    terminal_fd: int | None = None,
) -> int:
    """Fork and exec the command; returns its pid once exec has succeeded.

    A close-on-exec pipe reports an exec failure's errno back to the parent,
    so a failed start is an error here rather than a mystery exit code.

    `new_group` puts the command in a process group of its own (its pid), so
    the whole tree it starts can be signalled at once; `terminal_fd` then
    makes that group the terminal's foreground group, as tini does, so job
    control and Ctrl-C keep working.  Both happen before exec (the parent
    learns the pid only after exec, so it never signals a group not yet made),
    while SIGTTOU is still blocked: tcsetpgrp from a background group would
    otherwise stop the child.
    """
    argv = list(command.argv)
    env = dict(environ)
    groups = list(identity.groups) if identity is not None else []
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child: no allocation-heavy work, no locks, exec or _exit
        try:
            os.close(read_end)
            if stdio is not None:  # --mask-output: the child writes into our pipes
                os.dup2(stdio[0], 1)
                os.dup2(stdio[1], 2)
            if new_group:
                os.setpgid(0, 0)
                if terminal_fd is not None:
                    try:
                        os.tcsetpgrp(terminal_fd, os.getpid())
                    except OSError:
                        pass  # the terminal went away meanwhile: run without it
            reset_signals()
            if identity is not None:  # groups, then gid, then uid: the order that works
                os.setgroups(groups)
                os.setgid(identity.gid)
                os.setuid(identity.uid)
            os.execve(command.path, argv, env)
        except OSError as exc:
            os.write(write_end, str(exc.errno or errno.EIO).encode())
        finally:
            os._exit(127)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    if report:
        os.waitpid(pid, 0)
        code = int(report)
        raise exec_error(command.argv[0], OSError(code, os.strerror(code)))
    return pid
