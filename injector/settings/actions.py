"""What the supervisor does on rotation, on a signal and at exit: --on-rotate, --rewrite-signal, --remap-exit, parsed.

Pure: no I/O.
"""

from __future__ import annotations

from collections import namedtuple

from injector.process.signal_names import parse_signal, signal_name


class RotateAction(namedtuple("RotateAction", "kind signal", defaults=(0,))):
    """What happens to the child when a credential rotates (--on-rotate).

    kind: "restart", "signal" or "none"; signal: the signal number for "signal"
    """

    __slots__ = ()

    def __str__(self) -> str:
        if self.kind == "signal":
            return f"signal:{signal_name(self.signal)}"
        return self.kind


def parse_on_rotate(text: str) -> RotateAction:
    if text in ("restart", "none"):
        return RotateAction(text)
    if text.startswith("signal:"):
        return RotateAction("signal", parse_signal(text[len("signal:") :]))  # the one parser: 1, HUP, RTMIN+3
    raise ValueError(f"bad --on-rotate {text!r} (use restart, none or signal:NAME)")


def parse_remap_exit(text: str) -> tuple[int, int]:
    """--remap-exit CODE:CODE (tini's -e, generalised): the command's exit code FROM becomes TO."""
    source, sep, target = text.partition(":")
    try:
        frm, to = int(source), int(target)
    except ValueError:
        frm = to = -1
    if not sep or not 0 <= frm <= 255 or not 0 <= to <= 255:
        raise ValueError(f"bad --remap-exit {text!r} (use CODE:CODE, each 0-255, e.g. 143:0)")
    return frm, to


def parse_rewrite_signal(text: str) -> tuple[int, int]:
    """--rewrite-signal FROM:TO (dumb-init's -r): TO 0 drops FROM instead of forwarding it."""
    import signal

    source, sep, target = text.partition(":")
    if not sep:
        raise ValueError(f"bad --rewrite-signal {text!r} (use FROM:TO, e.g. TERM:QUIT)")
    frm = parse_signal(source)
    if frm in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        raise ValueError(f"--rewrite-signal: {source} cannot be caught or forwarded, so it cannot be rewritten")
    to = 0 if target.strip() == "0" else parse_signal(target)
    return frm, to
