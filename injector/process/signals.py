"""Signal names as a user writes them (15, TERM, SIGTERM, RTMIN+3): the one parser.

Every option that takes a signal (--on-rotate signal:NAME, --rewrite-signal FROM:TO) reads it here.
"""

from __future__ import annotations


def parse_signal(name: str) -> int:
    import signal

    upper = name.upper()
    candidate = upper if upper.startswith("SIG") else "SIG" + upper
    try:
        return int(signal.Signals[candidate])
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


def parse_signal_number(text: str) -> int:
    """A signal as a user writes it: 15, TERM, SIGTERM, RTMIN+3, SIGRTMAX-1."""
    import signal

    upper = text.strip().upper()
    if upper.isdigit():
        number = int(upper)
    else:
        name = upper.removeprefix("SIG")
        for base, sign in (("RTMIN", 1), ("RTMAX", -1)):
            if name.startswith(base):
                offset = name[len(base) :]
                step = offset[1:] if offset[:1] in ("+", "-") and offset[1:].isdigit() else None
                if offset and (step is None or (offset[0] == "+") != (sign == 1)):
                    raise ValueError(f"unknown signal {text!r}")
                number = int(getattr(signal, "SIG" + base)) + sign * int(step or 0)
                break
        else:
            return parse_signal(name)
    if number not in signal.valid_signals():
        raise ValueError(f"unknown signal {text!r}")
    return number


def parse_rewrite_signal(text: str) -> tuple[int, int]:
    """--rewrite-signal FROM:TO (dumb-init's -r): TO 0 drops FROM instead of forwarding it."""
    import signal

    source, sep, target = text.partition(":")
    if not sep:
        raise ValueError(f"bad --rewrite-signal {text!r} (use FROM:TO, e.g. TERM:QUIT)")
    frm = parse_signal_number(source)
    if frm in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        raise ValueError(f"--rewrite-signal: {source} cannot be caught or forwarded, so it cannot be rewritten")
    to = 0 if target.strip() == "0" else parse_signal_number(target)
    return frm, to
