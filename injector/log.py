"""Log lines on stderr, text or JSON, without the `logging` package.

`logging` costs several milliseconds to import and every container start pays
start-up time, so this is a small logger of our own.  It is also the last line
of defence for secrets: every value registered with `protect()` is replaced by
`<redacted>` in every line, whatever the caller put in it.
"""

from __future__ import annotations

import io
import json
import sys
import time

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
LOG_FORMATS = ("text", "json")
REDACTED = "<redacted>"
# Shorter strings are not redacted: replacing every "t" in a line would mangle
# the log and reveal the "secret" all the same.  Real tokens are far longer.
MIN_REDACTED_LENGTH = 6


class Logger:
    def __init__(self, stream: io.TextIOBase | None = None) -> None:
        self._stream = stream
        self.level = LEVELS["info"]
        self.format = "text"
        self._protected: set[str] = set()
        self._ordered: list[str] | None = []  # longest first; rebuilt on first use after an add

    def configure(self, *, level: str | None = None, fmt: str | None = None) -> None:
        if level is not None:
            self.level = LEVELS[level]
        if fmt is not None:
            self.format = fmt

    def protect(self, secret: str) -> None:
        """Never let `secret` appear in a log line from now on."""
        if len(secret) >= MIN_REDACTED_LENGTH and secret not in self._protected:
            self._protected.add(secret)
            self._ordered = None

    def redact(self, text: str) -> str:
        if self._ordered is None:
            # Longest first, so a secret that contains another is removed whole.
            self._ordered = sorted(self._protected, key=len, reverse=True)
        for secret in self._ordered:
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
        if self.format == "json":
            record: dict[str, object] = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "level": level,
                "msg": message,
            }
            record.update(fields)
            line = json.dumps(record, default=str)
        else:
            extra = "".join(f" {key}={value}" for key, value in fields.items())
            line = f"stronghold-init: {level}: {message}{extra}"
        stream = self._stream or sys.stderr
        stream.write(self.redact(line) + "\n")
        stream.flush()


log = Logger()
