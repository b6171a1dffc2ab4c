"""A child that orphans a grandchild, for the reaping tests (as PID 1 and as subreaper).

    orphans.py            the orphan exits at once; wait until it is reaped by someone else,
                          then print `reaped <my pid> <my ppid>` and exit 0 (`zombie left`, 1, after 30 s)
    orphans.py --hold     the orphan lives on: print `orphan <pid>`; on a stdin line let it exit and
                          print `released`; exit 0 on the next line

The reaping can only be watched, not waited on (no event says "reaped by another
process"), so the first form polls /proc with a deadline.
"""

import os
import sys
import time


def orphan(hold: tuple[int, int] | None) -> int:
    """Fork a child that forks the orphan and exits; return the orphan's pid.

    With `hold` (a pipe), the orphan lives until the maker closes the pipe's write end.
    """
    pid_read, pid_write = os.pipe()
    first = os.fork()
    if first == 0:
        grandchild = os.fork()
        if grandchild == 0:
            if hold is not None:
                for fd in (pid_read, pid_write, hold[1]):
                    os.close(fd)  # only the maker may hold the write end, or EOF never comes
                os.read(hold[0], 1)
            os._exit(0)  # without --hold: exits at once, a zombie unless someone reaps it
        os.write(pid_write, str(grandchild).encode())
        os._exit(0)  # orphans it
    os.waitpid(first, 0)
    os.close(pid_write)
    return int(os.read(pid_read, 32))


def main() -> None:
    if "--hold" in sys.argv[1:]:
        hold_read, hold_write = os.pipe()
        pid = orphan((hold_read, hold_write))
        os.close(hold_read)
        print("orphan", pid, flush=True)
        sys.stdin.readline()
        os.close(hold_write)
        print("released", flush=True)
        sys.stdin.readline()
        return
    pid = orphan(None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            print("reaped", os.getpid(), os.getppid(), flush=True)
            return
        time.sleep(0.01)
    print("zombie left", flush=True)
    sys.exit(1)


main()
