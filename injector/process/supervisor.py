"""Stay as the command's parent: forward signals, reap zombies, restart on request.

Signals are taken synchronously, tini-style: every signal a process can
catch is blocked before any thread starts (threads inherit the mask) and the
main thread sleeps in sigwaitinfo, so an idle supervisor uses no CPU.  Every
one of them but SIGCHLD is forwarded to the command (SIGSEGV and the like too
when they were sent with kill: a real fault in this process is delivered by
the kernel even while blocked, and ends it as it should).  Blocked, SIGTSTP,
SIGTTIN and SIGTTOU never stop stronghold-init itself.

Other threads (the refresher) never touch the child: they post a request and
wake the main thread with `pthread_kill(WAKE)`.  An outside process may send
that same signal (SIGRTMIN); the siginfo tells them apart (ours carries our
own pid, which no other sender has; a sender outside our PID namespace shows
as 0), and real-time signals queue rather than merge, so an outside one is
never swallowed by ours.

The command runs in a process group of its own.  A restart, or a stop that
stronghold-init starts itself (--on-expiry exit), ends that whole group:
SIGTERM, SIGKILL after the grace period, and reaping until the group is
empty, so no process of the old instance survives with the old token.

This module knows no tokens: a restart asks a callable for the environment.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque, namedtuple
from collections.abc import Callable, Mapping
from enum import Enum

from injector.errors import ExitCode, StrongholdError
from injector.log import log
from injector.process.launch import Command, spawn
from injector.process.wake import WAKE, wake

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.process.users import Identity

# Everything catchable: valid_signals() already leaves out glibc's internal 32 and 33.
WAITED = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
# A SIGTERM from outside means "stop": the command gets SIGKILL if still there after --grace.
# SIGINT and SIGQUIT end restarts too, but an interactive program may catch them and carry on.
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# Signals a terminal sends to its whole foreground process group: when the
# kernel sent one to us and the command is in our group, it already has it.
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGWINCH, signal.SIGHUP, signal.SIGCONT)
SI_KERNEL = 0x80
RESTART_DEBOUNCE = 0.25  # rotations landing within this window cause one restart
GROUP_POLL = 0.05  # while waiting for an ended group's last members, which may not be our children
KILLED_GROUP_WAIT = 5.0  # after SIGKILL, how long to wait for the group to empty before going on


class Phase(Enum):
    """Where the supervised command is: one state instead of loose flags (OpenBao agent's exec does the same).

    The deadlines (restart due, SIGKILL after --grace, give up on a SIGKILLed
    group) are kept beside it; each has a meaning only in the phases named.
    """

    RUNNING = "running"  # the command runs; nothing pending
    RESTART_DUE = "restart due"  # a rotation asked for a restart, debounced until `_restart_at`
    RESTARTING = "restarting"  # ending the command's whole group, then starting it again
    STOPPING = "stopping"  # a stop signal was forwarded: when the command exits, so do we
    ENDING = "ending"  # ending the command's whole group, then exiting (our own stop, --signal-group)
    DONE = "done"  # run() returns `_exit_code`


ENDING_GROUP = (Phase.RESTARTING, Phase.ENDING)  # waiting for the command's group to be empty


def block_signals() -> None:
    """Must run before any thread starts, so every thread inherits the mask."""
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)


def exit_status(status: int) -> int:
    """waitpid status -> our exit code: the child's code, or 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return ExitCode.killed_by(os.WTERMSIG(status))
    return os.waitstatus_to_exitcode(status)


def group_alive(pgid: int) -> bool:
    """Whether any process (a zombie too) is still in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal (another user): still there
        return True
    return True


def controlling_terminal() -> int | None:
    """The first of stdin, stdout, stderr that is our controlling terminal with our group in the foreground.

    Only then is the terminal handed to the command: a stronghold-init started
    in the background must not steal the terminal from the shell.
    """
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return fd
        except OSError:  # a terminal, but not our controlling one
            continue
    return None


class Restart(namedtuple("Restart", "")):
    """Stop the child's whole group (SIGTERM, grace, SIGKILL) and start it again."""

    __slots__ = ()


class Signal(namedtuple("Signal", "signum")):
    """Send the child this signal."""

    __slots__ = ()


class Stop(namedtuple("Stop", "exit_code")):
    """End the child's whole group as for a restart and exit with `exit_code` (e.g. on expiry)."""

    __slots__ = ()


Request = Restart | Signal | Stop


class Supervisor:
    def __init__(
        self,
        command: Command,
        environment: Callable[[], Mapping[str, str]],
        *,
        grace: float,
        identity: Identity | None = None,
        stdio: tuple[int, int] | None = None,
        signal_group: bool = False,
        rewrite: Mapping[int, int] | None = None,
        remap_exit: Mapping[int, int] | None = None,
    ) -> None:
        self._command = command
        self._stdio = stdio  # the child's stdout and stderr, when not ours (--mask-output)
        self._identity = identity  # users.Identity for the child, or None
        self._environment = environment
        self._grace = grace
        self._signal_group = signal_group  # forward to the command's whole group (--signal-group)
        self._rewrite = dict(rewrite or {})  # received signal -> what the command gets; 0 drops it
        self._remap_exit = dict(remap_exit or {})
        self._requests: deque[Request] = deque()
        self._main_thread = threading.get_ident()
        self._pid = os.getpid()
        self.child: int | None = None
        self._pgid: int | None = None  # the current (or last) instance's process group
        self._terminal: int | None = None  # the fd whose terminal the command was handed
        self._status: int | None = None  # the last instance's exit code
        self._phase = Phase.RUNNING
        self._exit_code = 0  # what run() returns, once DONE
        self._exit_code_override: int | None = None  # a Stop request's code, instead of the command's
        self._restart_at = 0.0  # RESTART_DUE: when the restart starts
        self._kill_at: float | None = None  # SIGKILL the command (or its group) then: --grace ran out
        self._give_up_at: float | None = None  # ENDING_GROUP after SIGKILL: stop waiting for the group then

    # -- called from other threads ----------------------------------------

    def request(self, item: Request) -> None:
        self._requests.append(item)
        wake(self._main_thread)

    # -- main thread -------------------------------------------------------

    def start(self) -> int:
        terminal = controlling_terminal()
        self.child = spawn(
            self._command, self._environment(), self._identity, self._stdio, new_group=True, terminal_fd=terminal
        )
        self._pgid = self.child
        self._terminal = terminal
        self._status = None
        log.debug("command started", pid=self.child)
        return self.child

    def run(self) -> int:
        """Wait for signals until the child is gone; return the exit code."""
        while self._phase is not Phase.DONE:
            timeout = self._next_timer()
            info: signal.struct_siginfo | None
            if timeout is None:
                info = signal.sigwaitinfo(WAITED)
            else:
                info = signal.sigtimedwait(WAITED, max(0.0, timeout - time.monotonic()))
            if info is None:
                self._on_timer()
            elif info.si_signo == signal.SIGCHLD:
                self._reap()
            elif info.si_signo == WAKE and info.si_pid == self._pid:
                self._drain_requests()
            else:
                self._forward(info)
        return self._exit_code

    def _next_timer(self) -> float | None:
        timers = [t for t in (self._kill_at, self._give_up_at) if t is not None]
        if self._phase is Phase.RESTART_DUE:
            timers.append(self._restart_at)
        if self._phase in ENDING_GROUP and self.child is None:  # the rest of the group may not be our children
            timers.append(time.monotonic() + GROUP_POLL)
        return min(timers) if timers else None

    def _on_timer(self) -> None:
        now = time.monotonic()
        if self._kill_at is not None and now >= self._kill_at:
            self._kill_at = None
            log.warning("command did not stop within the grace period; sending SIGKILL")
            if self._phase in ENDING_GROUP:
                self._signal_group_of_command(signal.SIGKILL)
                self._give_up_at = now + KILLED_GROUP_WAIT
            else:
                self._send(signal.SIGKILL)
        if self._phase is Phase.RESTART_DUE and now >= self._restart_at:
            log.info("restarting the command with rotated credentials")
            self._end_group(Phase.RESTARTING)
        if self._phase in ENDING_GROUP and self.child is None:
            self._check_group_ended(now)

    def _end_group(self, then: Phase) -> None:
        """SIGTERM (as rewritten) to the command's whole group; SIGKILL after the grace period.

        `then`: RESTARTING (start it again once the group is empty) or ENDING (exit then).
        """
        self._phase = then
        self._signal_group_of_command(self._rewrite.get(signal.SIGTERM, signal.SIGTERM))
        if self._kill_at is None:
            self._kill_at = time.monotonic() + self._grace

    def _check_group_ended(self, now: float) -> None:
        if self._pgid is not None and group_alive(self._pgid):
            if self._give_up_at is None or now < self._give_up_at:
                return
            log.warning("processes of the old instance outlived SIGKILL; going on without them", pgid=self._pgid)
        self._kill_at = self._give_up_at = None
        if self._phase is Phase.ENDING:
            self._finish()
            return
        self._phase = Phase.RUNNING
        try:
            self.start()
        except StrongholdError as exc:
            log.error(f"restart failed: {exc.message}")
            self._phase, self._exit_code = Phase.DONE, int(exc.exit_code)

    def _drain_requests(self) -> None:
        while self._requests:
            item = self._requests.popleft()
            if isinstance(item, Restart):
                if self._phase is Phase.RUNNING:  # (a restart already due or under way covers this one)
                    self._phase, self._restart_at = Phase.RESTART_DUE, time.monotonic() + RESTART_DEBOUNCE
            elif isinstance(item, Signal):
                self._send(item.signum)
            elif isinstance(item, Stop):
                self._exit_code_override = item.exit_code
                if self._phase in ENDING_GROUP:
                    self._phase = Phase.ENDING  # the group is being ended already: exit once it is
                elif self._phase is not Phase.DONE:
                    self._end_group(Phase.ENDING)

    def _forward(self, info: signal.struct_siginfo) -> None:
        signum = info.si_signo
        target = self._rewrite.get(signum, signum)
        if target == 0:  # the user asked for this signal to mean nothing at all
            log.debug("signal dropped (--rewrite-signal ...:0)", signal=signum)
            return
        if signum in STOPPING_SIGNALS:
            # No more restarts; a SIGTERM during a restart ends it (README: supervision, refresh and rotation).
            if self._phase in (Phase.RUNNING, Phase.RESTART_DUE):
                self._phase = Phase.STOPPING
            elif self._phase is Phase.RESTARTING:
                self._phase = Phase.ENDING
            if signum == signal.SIGTERM and self._kill_at is None:
                self._kill_at = time.monotonic() + self._grace  # --grace applies to a stop too
        if self._kernel_already_delivered(info):
            return
        self._send(target)

    def _kernel_already_delivered(self, info: signal.struct_siginfo) -> bool:
        """Whether the terminal already sent this signal to the command too.

        The kernel sends Ctrl-C, Ctrl-\\, Ctrl-Z and resizes to the terminal's
        foreground group: we got one, so we are in that group, and the command
        has it too exactly when it is in our group.  A hangup is different: it
        goes to the session leader alone, so when we lead the session the
        command never got it and it must be forwarded.
        """
        signum = info.si_signo
        if info.si_code != SI_KERNEL or signum not in TERMINAL_SIGNALS or self.child is None:
            return False
        if signum in (signal.SIGHUP, signal.SIGCONT) and os.getsid(0) == self._pid:
            return False
        try:
            return os.getpgid(self.child) == os.getpgrp()
        except ProcessLookupError:
            return False

    def _send(self, signum: int) -> None:
        """To the command, or to its whole group with --signal-group."""
        if self._signal_group:
            self._signal_group_of_command(signum)
            return
        if self.child is None:
            return
        try:
            os.kill(self.child, signum)
        except ProcessLookupError:
            log.debug("command already gone; signal not forwarded", signal=signum)

    def _signal_group_of_command(self, signum: int) -> None:
        if self._pgid is None or signum == 0:
            return
        try:
            os.killpg(self._pgid, signum)
        except (ProcessLookupError, PermissionError):
            log.debug("command's group already gone; signal not sent", signal=signum)

    def _reap(self) -> None:
        """Reap every exited process; act when the command itself is gone."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == self.child:
                self._status = exit_status(status)
                self.child = None
                self._take_back_terminal()
        if self.child is not None or self._status is None:
            return
        if self._phase in ENDING_GROUP:
            self._check_group_ended(time.monotonic())
            return
        if self._signal_group and self._pgid is not None and group_alive(self._pgid):
            # dumb-init's setsid mode: the rest of the group is told to go.  As a
            # subreaper we then wait for it (SIGKILL after --grace), reaping the
            # orphans: exiting at once would leave them running, or as zombies of
            # an init that may never reap them.  The exit code stays the command's.
            self._end_group(Phase.ENDING)
            return
        self._finish()

    def _finish(self) -> None:
        self._phase = Phase.DONE
        if self._exit_code_override is not None:
            self._exit_code = self._exit_code_override
            return
        code = self._status if self._status is not None else 0
        self._exit_code = self._remap_exit.get(code, code)

    def _take_back_terminal(self) -> None:
        """The command is gone: its group must not keep the terminal (a shell after us would stop on SIGTTIN)."""
        if self._terminal is None:
            return
        try:
            if os.tcgetpgrp(self._terminal) != os.getpgrp():
                os.tcsetpgrp(self._terminal, os.getpgrp())  # SIGTTOU is blocked, so this works from the background
        except OSError:
            pass  # the terminal is gone (hangup): nothing to give back
        self._terminal = None
