"""Signal names as a user writes them, and as we print them: the one parser.

    15, TERM, SIGTERM, term, RTMIN, RTMIN+3, SIGRTMAX-1  ->  a signal number

Every flag that takes a signal (--on-rotate signal:SIG, --rewrite-signal
FROM:TO) goes through `parse_signal`, so one spelling works everywhere.
`signal_name` is its inverse for log lines: `signal.Signals(n).name` fails
for most real-time signals (only RTMIN and RTMAX are members).
"""

from __future__ import annotations

import signal


def parse_signal(text: str) -> int:
    """A signal number from a number or a name (SIG prefix optional, any case, RTMIN+N / RTMAX-N)."""
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
            try:
                number = int(signal.Signals["SIG" + name])
            except KeyError:
                raise ValueError(f"unknown signal {text!r}") from None
    if number not in signal.valid_signals():
        raise ValueError(f"unknown signal {text!r}")
    return number


def signal_name(number: int) -> str:
    """SIGTERM, SIGRTMIN+3: the name `parse_signal` reads back to `number`."""
    rtmin, rtmax = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    if rtmin < number <= rtmax:
        return f"SIGRTMIN+{number - rtmin}" if number - rtmin <= rtmax - number else f"SIGRTMAX-{rtmax - number}"
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
