"""What happens to the child on rotation and exit: --on-rotate and --remap-exit, parsed.

Pure: no I/O.
"""

from __future__ import annotations

from collections import namedtuple

from injector.process.signals import parse_signal


class RotateAction(namedtuple("RotateAction", "kind signal", defaults=(0,))):
    """What happens to the child when a credential rotates (--on-rotate).

    kind: "restart", "signal" or "none"; signal: the signal number for "signal"
    """

    __slots__ = ()

    def __str__(self) -> str:
        if self.kind == "signal":
            import signal as _signal

            return f"signal:{_signal.Signals(self.signal).name}"
        return self.kind


def parse_on_rotate(text: str) -> RotateAction:
    if text in ("restart", "none"):
        return RotateAction(text)
    if text.startswith("signal:"):
        return RotateAction("signal", parse_signal(text[len("signal:") :]))
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
