"""A progress line on stderr, only when stderr is a terminal (never in CI logs or pipes)."""

from __future__ import annotations

import os
import sys
import time


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._last = 0.0
        self._shown = False

    @classmethod
    def for_stderr(cls) -> Progress:
        try:
            return cls(os.isatty(sys.stderr.fileno()))
        except (OSError, ValueError, AttributeError):
            return cls(False)

    def update(self, text: str) -> None:
        """At most ten redraws a second; paths only, never content."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        from injector.log import visible  # a path from the image: its control characters are shown, not obeyed

        sys.stderr.write("\r\x1b[2Kaudit: " + visible(text[:110]))
        sys.stderr.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            self._shown = False
