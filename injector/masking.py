"""`--mask-output`: replace every token value in the child's stdout and stderr
with `<redacted:NAME>`, as `op run` does.

The child writes into pipes; a pump thread per stream copies bytes to our own
stdout/stderr through a `Masker`.  Output is passed on as soon as it cannot be
the start of a token: only a tail that could still grow into one is held back,
and released after a short quiet spell (so a prompt is never stuck).  Bytes are
never decoded, so binary output passes through untouched.  Every value issued
during the run is masked, rotated and superseded ones too.
"""

from __future__ import annotations

import os
import select
import threading

QUIET_FLUSH = 0.2  # seconds of silence after which a held-back tail is released
CHUNK = 65536


class Masker:
    """Pure byte masking with a carry-over for tokens split across reads.  Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[bytes, bytes] = {}  # token -> replacement
        self._prefixes: set[bytes] = set()  # every proper prefix of every token
        self._longest = 0

    def add(self, value: str, name: str) -> None:
        token = value.encode()
        with self._lock:
            if token in self._tokens:
                return
            self._tokens[token] = f"<redacted:{name}>".encode()
            self._prefixes.update(token[:i] for i in range(1, len(token)))
            self._longest = max(self._longest, len(token))

    def feed(self, carry: bytes, data: bytes) -> tuple[bytes, bytes]:
        """-> (bytes safe to write now, tail to carry into the next feed)."""
        with self._lock:
            buffer = self._mask(carry + data)
            keep = 0
            for length in range(min(self._longest - 1, len(buffer)), 0, -1):
                if buffer[-length:] in self._prefixes:
                    keep = length
                    break
        return (buffer[: len(buffer) - keep], buffer[len(buffer) - keep :]) if keep else (buffer, b"")

    def _mask(self, buffer: bytes) -> bytes:
        # Longest first, so a token that contains another is masked whole.
        for token in sorted(self._tokens, key=len, reverse=True):
            if token in buffer:
                buffer = buffer.replace(token, self._tokens[token])
        return buffer


class OutputPump:
    """Copies one pipe to one file descriptor through the masker, in a thread."""

    def __init__(self, masker: Masker, read_fd: int, out_fd: int, name: str) -> None:
        self._masker = masker
        self._read_fd = read_fd
        self._out_fd = out_fd
        self._thread = threading.Thread(target=self._run, name=f"stronghold-mask-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        carry = b""
        while True:
            ready, _, _ = select.select([self._read_fd], [], [], QUIET_FLUSH if carry else None)
            if not ready:  # quiet: the held-back tail was not a token after all
                self._write(carry)
                carry = b""
                continue
            try:
                data = os.read(self._read_fd, CHUNK)
            except OSError:
                data = b""
            if not data:
                self._write(carry)
                os.close(self._read_fd)
                return
            out, carry = self._masker.feed(carry, data)
            self._write(out)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._out_fd, view) :]
            except OSError:
                return  # our own output is gone (closed pipe): drop, never crash


class MaskedOutput:
    """The pipes the child writes to, and their pumps to our stdout and stderr."""

    def __init__(self, masker: Masker) -> None:
        out_read, self.stdout_fd = os.pipe2(os.O_CLOEXEC)
        err_read, self.stderr_fd = os.pipe2(os.O_CLOEXEC)
        self._pumps = [OutputPump(masker, out_read, 1, "stdout"), OutputPump(masker, err_read, 2, "stderr")]

    def start(self) -> None:
        for pump in self._pumps:
            pump.start()

    def finish(self, timeout: float = 2.0) -> None:
        """After the child is gone: close our write ends and drain what is left."""
        for fd in (self.stdout_fd, self.stderr_fd):
            os.close(fd)
        for pump in self._pumps:
            pump.join(timeout)  # a daemon the child left behind may hold the pipe: do not wait for ever
