"""Log lines on stderr, text or JSON, without the `logging` package.

`logging` costs several milliseconds to import and every container start pays
start-up time, so this is a small logger of our own.  It is also the last line
of defence for secrets: every value registered with `protect()` is replaced by
`<redacted>` in every line, whatever the caller put in it, and so are its
escaped forms (repr, JSON), which is how a value shows in exception text.

Order matters: message and fields are redacted first, then control
characters are made visible (a newline in a variable name cannot forge a
second line), then the line is formatted (JSON escaping can no longer hide a
secret from the redactor).

The logger never raises.  A child may set O_NONBLOCK on the stderr it shares
with us (Node does), or the log reader may be gone (EPIPE): a line that
cannot be written within a short wait is dropped, and the caller (e.g. the
refresher thread) carries on.
"""

from __future__ import annotations

import _thread  # (loaded at interpreter start: threading would be a new import for --help)
import io
import json
import os
import sys
import time

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
LOG_FORMATS = ("text", "json")
REDACTED = "<redacted>"
# Shorter strings are not redacted: replacing every "t" in a line would mangle
# the log and reveal the "secret" all the same.  Real tokens are far longer.
MIN_REDACTED_LENGTH = 6
WRITE_PATIENCE = 1.0  # seconds a line may wait for a full (non-blocking) stderr before it is dropped
# C0 and C1 controls, DEL and the Unicode line breaks, shown escaped in text lines (a C1 CSI, 0x9b, is an
# escape sequence to many terminals); the audit's reports use the same table (visible()).
_VISIBLE = {c: repr(chr(c))[1:-1] for c in [*range(32), *range(127, 160), 0x2028, 0x2029]}


def visible(text: str) -> str:
    """`text` with every control character and Unicode line break shown as an escape."""
    return text.translate(_VISIBLE)


def escaped_forms(secret: str) -> set[str]:
    """`secret` and the forms it takes inside repr() and JSON text."""
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms.add(secret.encode("unicode_escape", "backslashreplace").decode("ascii", "replace"))
    try:
        forms.add(repr(secret.encode())[2:-1])  # as bytes, e.g. b'Bearer ...\n' in an http.client error
    except UnicodeEncodeError:
        pass
    return {form for form in forms if len(form) >= MIN_REDACTED_LENGTH}


class Logger:
    def __init__(self, stream: io.TextIOBase | None = None) -> None:
        self._stream = stream
        self.level = LEVELS["info"]
        self.format = "text"
        self._protected: set[str] = set()
        # Longest first; replaced whole by protect() under the lock, only read by redact(): a
        # lazily sorted list could be replaced by a redacting thread with one that lacks the newest secret.
        self._ordered: tuple[str, ...] = ()
        self._lock = _thread.allocate_lock()

    def configure(self, *, level: str | None = None, fmt: str | None = None) -> None:
        if level is not None:
            self.level = LEVELS[level]
        if fmt is not None:
            self.format = fmt

    def protect(self, secret: str) -> None:
        """Never let `secret` (or an escaped form of it) appear in a log line from now on."""
        if len(secret) < MIN_REDACTED_LENGTH:
            return
        with self._lock:
            if secret in self._protected:
                return
            self._protected.update(escaped_forms(secret))
            # Longest first, so a secret that contains another is removed whole.
            self._ordered = tuple(sorted(self._protected, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._ordered:  # one read of the attribute: a whole, current list
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def debug(self, message: str, **fields: object) -> None:
        self._emit("debug", message, fields)

    def info(self, message: str, **fields: object) -> None:
        self._emit("info", message, fields)

    def warning(self, message: str, **fields: object) -> None:
        self._emit("warning", message, fields)

    def error(self, message: str, **fields: object) -> None:
        self._emit("error", message, fields)

    def _emit(self, level: str, message: str, fields: dict[str, object]) -> None:
        if LEVELS[level] < self.level:
            return
        try:
            line = self._format(level, message, fields)
        except Exception:  # a field whose str() fails must not take the caller down
            line = f"stronghold-init: {level}: (a log line could not be formatted)"
        self._write(line + "\n")

    def _format(self, level: str, message: str, fields: dict[str, object]) -> str:
        message = self.redact(str(message))
        values = {str(key): self.redact(str(value)) for key, value in fields.items()}
        if self.format == "json":
            record: dict[str, object] = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "level": level,
                "msg": message,
            }
            record.update(values)
            return self.redact(json.dumps(record))
        extra = "".join(f" {key}={value}" for key, value in values.items())
        return self.redact(f"stronghold-init: {level}: {message}{extra}".translate(_VISIBLE))

    def _write(self, text: str) -> None:
        """Write, never raise: wait briefly on a full non-blocking stderr, drop on any other error."""
        if self._stream is not None:
            try:
                self._stream.write(text)
                self._stream.flush()
            except Exception:
                pass
            return
        try:
            fd = sys.stderr.fileno() if sys.stderr is not None else 2
        except (AttributeError, OSError, ValueError):
            fd = 2
        data = memoryview(text.encode("utf-8", "backslashreplace"))
        deadline = None
        while data:
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                import select

                now = time.monotonic()
                deadline = deadline or now + WRITE_PATIENCE
                if now >= deadline:
                    return  # the reader is not keeping up: drop the rest of this line
                try:
                    select.select([], [fd], [], deadline - now)
                except (OSError, ValueError):
                    return
            except InterruptedError:
                continue
            except Exception:  # EPIPE, EBADF, EIO...: nowhere to log to, carry on without
                return


log = Logger()
