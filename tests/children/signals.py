"""A child for signal tests, in dumb-init's style: it reports, the test syncs on its lines.

    signals.py [--pause] [--exit-on SIG]... [--ignore SIG]... [--default SIG]...

Prints `ready <pid> <pgid> <ppid> <sid>` once every handler is installed,
then `got <number>` for each signal it receives (os.write: a handler must not
use print, which is not reentrant).  It catches every catchable signal except
SIGCHLD; it exits 0 after reporting one named with --exit-on, ignores those
named with --ignore, leaves those named with --default alone, and exits 0 when its stdin reaches end of file (when
stdin is not a terminal and --pause is not given: a shell gives a background
job /dev/null as stdin), so a test can end it without a signal.
"""

import os
import signal
import sys


def number(name: str) -> int:
    return int(name) if name.isdigit() else int(getattr(signal, name if name.startswith("SIG") else "SIG" + name))


def main() -> None:
    chosen: dict[str, set[int]] = {"--exit-on": set(), "--ignore": set(), "--default": set()}
    args = sys.argv[1:]
    pause = "--pause" in args
    args = [arg for arg in args if arg != "--pause"]
    while args:
        flag, value, *args = args
        chosen[flag].add(number(value))
    exit_on, ignore, default = chosen["--exit-on"], chosen["--ignore"], chosen["--default"]

    def report(signum: int, _frame: object) -> None:
        os.write(1, f"got {signum}\n".encode())
        if signum in exit_on:
            os._exit(0)

    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD) or signum in default:
            continue
        signal.signal(signum, signal.SIG_IGN if signum in ignore else report)
    os.write(1, f"ready {os.getpid()} {os.getpgrp()} {os.getppid()} {os.getsid(0)}\n".encode())
    if pause or os.isatty(0):
        while True:
            signal.pause()
    while os.read(0, 4096):  # PEP 475: a handled signal does not end the read
        pass


main()
