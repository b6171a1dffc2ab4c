"""Stay as the command's parent: forward signals, reap zombies, restart on request.

Signals are taken synchronously, tini-style: the forwarded set, SIGCHLD and
an internal wake-up signal are blocked before any thread starts (threads
inherit the mask) and the main thread sleeps in sigwaitinfo, so an idle
supervisor uses no CPU.  Other threads (the refresher) never touch the child:
they post a request and wake the main thread with `pthread_kill`.

This module knows no tokens: a restart asks a callable for the environment.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque, namedtuple
from collections.abc import Callable, Mapping

from injector.errors import StrongholdError
from injector.launch import Command, spawn
from injector.log import log

FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# Signals a terminal sends to its whole foreground process group: when the
# kernel sent one and the child is in our group, it already has it.
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGWINCH, signal.SIGHUP)
WAKE = signal.SIGRTMIN  # internal: "a request is queued"
WAITED = frozenset(FORWARDED) | {signal.SIGCHLD, WAKE}
SI_KERNEL = 0x80
RESTART_DEBOUNCE = 0.25  # rotations landing within this window cause one restart


def block_signals() -> None:
    """Must run before any thread starts, so every thread inherits the mask."""
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)


def exit_status(status: int) -> int:
    """waitpid status -> our exit code: the child's code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


class Restart(namedtuple("Restart", "")):
    """Stop the child (SIGTERM, grace, SIGKILL) and start it again."""

    __slots__ = ()


class Signal(namedtuple("Signal", "signum")):
    """Send the child this signal."""

    __slots__ = ()


class Stop(namedtuple("Stop", "exit_code")):
    """Stop the child as on SIGTERM and exit with `exit_code` (e.g. on expiry)."""

    __slots__ = ()


Request = Restart | Signal | Stop


class Supervisor:
    def __init__(
        self,
        command: Command,
        environment: Callable[[], Mapping[str, str]],
        *,
        grace: float,
        identity=None,
        stdio: tuple[int, int] | None = None,
    ) -> None:
        self._command = command
        self._stdio = stdio  # the child's stdout and stderr, when not ours (--mask-output)
        self._identity = identity  # users.Identity for the child, or None
        self._environment = environment
        self._grace = grace
        self._requests: deque[Request] = deque()
        self._main_thread = threading.get_ident()
        self.child: int | None = None
        self._stopping = False  # no more restarts: we exit when the child does
        self._exit_code_override: int | None = None
        self._restarting = False
        self._restart_at: float | None = None
        self._kill_at: float | None = None

    # -- called from other threads ----------------------------------------

    def request(self, item: Request) -> None:
        self._requests.append(item)
        signal.pthread_kill(self._main_thread, WAKE)

    # -- main thread -------------------------------------------------------

    def start(self) -> int:
        self.child = spawn(self._command, self._environment(), self._identity, self._stdio)
        log.debug("command started", pid=self.child)
        return self.child

    def run(self) -> int:
        """Wait for signals until the child is gone; return the exit code."""
        while True:
            timeout = self._next_timer()
            if timeout is None:
                info = signal.sigwaitinfo(WAITED)
            else:
                info = signal.sigtimedwait(WAITED, max(0.0, timeout - time.monotonic()))
            if info is None:
                self._on_timer()
            elif info.si_signo == signal.SIGCHLD:
                code = self._reap()
                if code is not None:
                    return code
            elif info.si_signo == WAKE:
                self._drain_requests()
            else:
                self._forward(info)

    def _next_timer(self) -> float | None:
        timers = [t for t in (self._restart_at, self._kill_at) if t is not None]
        return min(timers) if timers else None

    def _on_timer(self) -> None:
        now = time.monotonic()
        if self._kill_at is not None and now >= self._kill_at:
            self._kill_at = None
            log.warning("command did not stop within the grace period; sending SIGKILL")
            self._send(signal.SIGKILL)
        if self._restart_at is not None and now >= self._restart_at:
            self._restart_at = None
            if not self._stopping:
                log.info("restarting the command with rotated credentials")
                self._restarting = True
                self._terminate()

    def _terminate(self) -> None:
        self._send(signal.SIGTERM)
        self._kill_at = time.monotonic() + self._grace

    def _drain_requests(self) -> None:
        while self._requests:
            item = self._requests.popleft()
            if isinstance(item, Restart):
                if self._restart_at is None and not self._restarting:
                    self._restart_at = time.monotonic() + RESTART_DEBOUNCE
            elif isinstance(item, Signal):
                self._send(item.signum)
            elif isinstance(item, Stop):
                self._stopping = True
                self._exit_code_override = item.exit_code
                self._terminate()

    def _forward(self, info: signal.struct_siginfo) -> None:
        signum = info.si_signo
        if signum in STOPPING_SIGNALS:
            self._stopping = True  # a SIGTERM during a restart ends it (SPEC section 5)
            self._restart_at = None
        if info.si_code == SI_KERNEL and signum in TERMINAL_SIGNALS and self._child_in_our_group():
            # Ctrl-C on a terminal: the kernel signalled the whole foreground
            # group, child included; forwarding would deliver it twice.
            return
        self._send(signum)

    def _child_in_our_group(self) -> bool:
        try:
            return self.child is not None and os.getpgid(self.child) == os.getpgrp()
        except ProcessLookupError:
            return False

    def _send(self, signum: int) -> None:
        if self.child is None:
            return
        try:
            os.kill(self.child, signum)
        except ProcessLookupError:
            log.debug("command already gone; signal not forwarded", signal=signum)

    def _reap(self) -> int | None:
        """Reap every exited process; an exit code when the child itself is gone."""
        code = None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self.child:
                code = exit_status(status)
        if code is None:
            return None
        self.child = None
        self._kill_at = None
        if self._restarting and not self._stopping:
            self._restarting = False
            try:
                self.start()
            except StrongholdError as exc:
                log.error(f"restart failed: {exc.message}")
                return exc.exit_code
            return None
        return self._exit_code_override if self._exit_code_override is not None else code
