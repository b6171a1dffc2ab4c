"""`--mask-output`: replace every token value in the child's stdout and stderr
with `<redacted:NAME>`, as `op run` does.

The child writes into pipes; a pump thread per stream copies bytes to our own
stdout/stderr through a `Masker`.  Output is passed on as soon as it cannot be
the start of a token: only a tail that could still grow into one is held back
(never more than the longest token minus one byte), and released after a short
quiet spell (so a prompt is never stuck).  Bytes are never decoded, so binary
output passes through untouched.  Every value issued during the run is masked
until its lease ends, rotated and superseded ones too.

Cost is linear: each token is searched with bytes' own substring search (C,
sublinear for long needles), and a held-back tail is found with one search
for the token's first 16 bytes plus a set lookup for the last 15 bytes, so a
20 KB token (a PEM bundle) costs no more than a short one.  Memory is the
tokens themselves plus their first 15 prefixes.
"""

from __future__ import annotations

import os
import select
import threading
import time

QUIET_FLUSH = 0.2  # seconds of silence after which a held-back tail is released
CHUNK = 65536
HEAD = 16  # a held-back tail at least this long is found by searching for the token's first HEAD bytes


class Masker:
    """Pure byte masking with a carry-over for tokens split across reads.  Thread-safe."""

    def __init__(self, clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._tokens: dict[bytes, bytes] = {}  # token -> replacement
        self._expiry: dict[bytes, float | None] = {}  # token -> when its lease ends (None: unknown)
        self._current: dict[str, bytes] = {}  # name -> its current token
        self._previous: dict[str, bytes] = {}  # name -> the token it superseded
        self._superseded: list[bytes] = []  # tokens no longer current: the only ones ever dropped
        self._ordered: list[bytes] = []  # longest first, so a token that contains another is masked whole
        self._short_prefixes: set[bytes] = set()  # every proper prefix shorter than HEAD
        self._longest = 0

    def add(self, value: str, name: str, expires_at: float | None = None) -> None:
        """Mask `value` from now on, and forget superseded values whose leases have ended."""
        token = value.encode("utf-8", "surrogatepass")  # never raises, whatever the value
        if not token:
            return
        with self._lock:
            previous = self._current.get(name)
            if previous is not None and previous != token:
                self._previous[name] = previous
                self._superseded.append(previous)
            self._current[name] = token
            self._expiry[token] = expires_at
            if token not in self._tokens:
                self._tokens[token] = f"<redacted:{name}>".encode()
                self._insert(token)
            if self._forget_ended():
                self._rebuild()

    def _forget_ended(self) -> bool:
        """Drop superseded tokens whose lease ended (with no known end, keep each name's last superseded one)."""
        now = self._clock()
        current = set(self._current.values())
        previous = set(self._previous.values())
        kept: list[bytes] = []
        dropped = False
        for token in self._superseded:
            if token in current or token not in self._tokens:
                continue  # current again, or already gone
            ends = self._expiry.get(token)
            if (ends is None and token in previous) or (ends is not None and ends > now):
                kept.append(token)
                continue
            del self._tokens[token]
            self._expiry.pop(token, None)
            dropped = True
        self._superseded = kept
        return dropped

    def _insert(self, token: bytes) -> None:
        """Add one token to the search structures without rebuilding them (adds are frequent, drops rare)."""
        import bisect

        bisect.insort(self._ordered, token, key=lambda t: -len(t))
        self._longest = max(self._longest, len(token))
        self._short_prefixes.update(token[:i] for i in range(1, min(HEAD, len(token))))

    def _rebuild(self) -> None:
        self._ordered = sorted(self._tokens, key=len, reverse=True)
        self._longest = len(self._ordered[0]) if self._ordered else 0
        self._short_prefixes = {token[:i] for token in self._tokens for i in range(1, min(HEAD, len(token)))}

    def feed(self, carry: bytes, data: bytes) -> tuple[bytes, bytes]:
        """-> (bytes safe to write now, tail to carry into the next feed)."""
        with self._lock:
            buffer = self._mask(carry + data if carry else data)
            keep = self._partial_tail(buffer)
        return (buffer[: len(buffer) - keep], buffer[len(buffer) - keep :]) if keep else (buffer, b"")

    def _mask(self, buffer: bytes) -> bytes:
        for token in self._ordered:
            if token in buffer:
                buffer = buffer.replace(token, self._tokens[token])
        return buffer

    def _partial_tail(self, buffer: bytes) -> int:
        """Length of the longest tail of `buffer` that is a proper prefix of a token (0 if none)."""
        size = len(buffer)
        best = 0
        for token in self._ordered:
            if len(token) <= HEAD or len(token) - 1 <= best:
                break  # ordered longest first: no later token can give a longer tail
            head = token[:HEAD]
            at = buffer.find(head, max(0, size - len(token) + 1))
            while at != -1 and size - at > best:
                if token.startswith(buffer[at:]):
                    best = size - at
                    break
                at = buffer.find(head, at + 1)
        for length in range(min(HEAD - 1, self._longest - 1, size), best, -1):
            if buffer[size - length :] in self._short_prefixes:
                return length
        return best


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
