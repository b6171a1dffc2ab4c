"""`--mask-output`: replace every token value in the child's stdout and stderr
with `<redacted:NAME>`, as `op run` does.

The child writes into pipes; a pump thread per stream copies bytes to our own
stdout/stderr through a `Masker`.  Output is passed on as soon as it cannot be
the start of a token: only a tail that could still grow into one is held back
(never more than the longest token minus one byte), and released after a short
quiet spell (so a prompt is never stuck).  Bytes are never decoded, so binary
output passes through untouched.  Every value issued during the run is masked
until its lease ends, rotated and superseded ones too.

Cost: most output holds no token, so the search is built to say "none here"
fast.  A token of length L contains, wherever it starts, the 4 bytes at some
buffer offset that is a multiple of any stride s <= L - 3.  So the buffer is
read as 4-byte integers at that stride (a memoryview slice, no Python loop)
and checked against a set of each token's first s 4-byte pieces
(set.isdisjoint, in C); only on a hit are the tokens owning the matching
pieces searched for exactly.  Strides are powers of two from 8 to 512, one
set per stride, so one short token does not make the long ones pay.  Tokens
under 11 bytes are searched for one by one with bytes' own substring search.
A held-back tail is found from a table of the tokens' first 16 bytes (a
window scan for short tokens, one search per long token) plus a set of their
first 15 prefixes.  Memory is the tokens plus at most 512 pieces and 15
prefixes each: linear in the token bytes.
"""

from __future__ import annotations

import bisect
import os
import select
import sys
import threading
import time
from collections.abc import Callable

QUIET_FLUSH = 0.2  # seconds of silence after which a held-back tail is released
CHUNK = 65536
HEAD = 16  # a held-back tail at least this long is found from the token's first HEAD bytes
PIECE = 4  # bytes per piece: one native unsigned 32-bit integer (small ints hash and compare fastest)
MIN_STRIDE = 8  # tokens shorter than PIECE + MIN_STRIDE - 1 bytes are searched for one by one
MAX_STRIDE = 512  # caps the pieces held per token: memory stays linear in the token bytes
WINDOW_TOKEN = 64  # tails of tokens up to this long are found by scanning the last bytes against HEAD table
# Values shorter than this are not masked: masking a one-character token replaces
# every such character in the output, which shows the value instead of hiding it.
MIN_MASKED_LENGTH = 8


def _stride_for(length: int) -> int:
    """The largest power of two <= length - PIECE + 1, within [MIN_STRIDE, MAX_STRIDE]; 0 for a short token."""
    room = min(length - PIECE + 1, MAX_STRIDE)
    return 0 if room < MIN_STRIDE else 1 << (room.bit_length() - 1)


def _piece(chunk: bytes) -> int:
    return int.from_bytes(chunk, sys.byteorder)  # as memoryview.cast("I") reads it


class _StrideIndex:
    """Every token of one stride class, by its first `stride` 4-byte pieces."""

    __slots__ = ("pieces", "stride")

    def __init__(self, stride: int) -> None:
        self.stride = stride
        # piece -> the token (or tokens) holding it within their first `stride` offsets
        self.pieces: dict[int, bytes | list[bytes]] = {}

    def add(self, token: bytes) -> None:
        for offset in range(self.stride):
            piece = _piece(token[offset : offset + PIECE])
            owners = self.pieces.get(piece)
            if owners is None:
                self.pieces[piece] = token  # the common case: one owner, held without a list
            elif isinstance(owners, list):
                if token not in owners:
                    owners.append(token)
            elif owners != token:
                self.pieces[piece] = [owners, token]

    def candidates(self, words: memoryview) -> set[bytes]:
        """Tokens that may occur in the buffer whose 8-byte words are `words` (empty in the common case)."""
        sampled = words[:: self.stride // PIECE]
        if self.pieces.keys().isdisjoint(sampled):
            return set()
        found: set[bytes] = set()
        for piece in self.pieces.keys() & set(sampled):
            owners = self.pieces[piece]
            found.update(owners if isinstance(owners, list) else (owners,))
        return found


class Masker:
    """Pure byte masking with a carry-over for tokens split across reads.  Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._tokens: dict[bytes, bytes] = {}  # token -> replacement
        self._expiry: dict[bytes, float | None] = {}  # token -> when its lease ends (None: unknown)
        self._current: dict[str, bytes] = {}  # name -> its current token
        self._previous: dict[str, bytes] = {}  # name -> the token it superseded
        self._superseded: list[bytes] = []  # tokens no longer current: the only ones ever dropped
        self._short: list[bytes] = []  # tokens searched for one by one (too short for pieces)
        self._strides: dict[int, _StrideIndex] = {}  # stride -> its tokens' pieces
        self._heads: dict[bytes, list[bytes]] = {}  # first HEAD bytes -> tokens up to WINDOW_TOKEN long
        self._long: list[bytes] = []  # tokens longer than WINDOW_TOKEN, longest first (their own tail search)
        self._short_prefixes: set[bytes] = set()  # every proper prefix shorter than HEAD
        self._longest = 0
        self._window = 0  # the longest token up to WINDOW_TOKEN bytes

    def add(self, value: str, name: str, expires_at: float | None = None) -> bool:
        """Mask `value` from now on, and forget superseded values whose leases have ended.

        -> False when `value` is too short to mask (under MIN_MASKED_LENGTH characters): not masked.
        """
        if len(value) < MIN_MASKED_LENGTH:
            return False
        token = value.encode("utf-8", "surrogatepass")  # never raises, whatever the value
        with self._lock:
            previous = self._current.get(name)
            if previous is not None and previous != token:
                self._previous[name] = previous
                self._superseded.append(previous)
            self._current[name] = token
            self._expiry[token] = expires_at
            if token not in self._tokens:
                self._tokens[token] = f"<redacted:{name}>".encode()
                self._index(token)
            if self._forget_ended():
                self._rebuild()
        return True

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

    def _index(self, token: bytes) -> None:
        """Add one token to the search structures without rebuilding them (adds are frequent, drops rare)."""
        stride = _stride_for(len(token))
        if stride:
            self._strides.setdefault(stride, _StrideIndex(stride)).add(token)
        else:
            self._short.append(token)
        if len(token) <= WINDOW_TOKEN:
            if len(token) > HEAD:
                self._heads.setdefault(token[:HEAD], []).append(token)
            self._window = max(self._window, len(token))
        else:
            bisect.insort(self._long, token, key=lambda t: -len(t))
        self._longest = max(self._longest, len(token))
        self._short_prefixes.update(token[:i] for i in range(1, min(HEAD, len(token))))

    def _rebuild(self) -> None:
        self._short, self._strides, self._heads, self._long = [], {}, {}, []
        self._short_prefixes = set()
        self._longest = self._window = 0
        for token in self._tokens:
            self._index(token)

    def feed(self, carry: bytes, data: bytes) -> tuple[bytes, bytes]:
        """-> (bytes safe to write now, tail to carry into the next feed)."""
        with self._lock:
            buffer = self._mask(carry + data if carry else data)
            keep = self._partial_tail(buffer)
        return (buffer[: len(buffer) - keep], buffer[len(buffer) - keep :]) if keep else (buffer, b"")

    def _mask(self, buffer: bytes) -> bytes:
        found = [token for token in self._short if token in buffer]
        if self._strides:
            words = memoryview(buffer)[: len(buffer) - len(buffer) % PIECE].cast("I")
            for index in self._strides.values():
                found.extend(token for token in index.candidates(words) if token in buffer)
            words.release()
        for token in sorted(found, key=len, reverse=True):  # longest first: a token inside another goes whole
            buffer = buffer.replace(token, self._tokens[token])
        return buffer

    def _partial_tail(self, buffer: bytes) -> int:
        """Length of the longest tail of `buffer` that is a proper prefix of a token (0 if none)."""
        size = len(buffer)
        best = self._long_token_tail(buffer)
        if self._heads and best < self._window - 1:
            best = max(best, self._short_token_tail(buffer, best))
        for length in range(min(HEAD - 1, self._longest - 1, size), best, -1):
            if buffer[size - length :] in self._short_prefixes:
                return length
        return best

    def _long_token_tail(self, buffer: bytes) -> int:
        """Tokens over WINDOW_TOKEN bytes are few: one search each for their head, near the end."""
        size = len(buffer)
        best = 0
        for token in self._long:
            if len(token) - 1 <= best:
                break  # longest first: no later token can give a longer tail
            head = token[:HEAD]
            at = buffer.find(head, max(0, size - len(token) + 1))
            while at != -1 and size - at > best:
                if token.startswith(buffer[at:]):
                    best = size - at
                    break
                at = buffer.find(head, at + 1)
        return best

    def _short_token_tail(self, buffer: bytes, best: int) -> int:
        """Short tokens may be many: scan the last bytes once against the table of their heads."""
        size = len(buffer)
        for at in range(max(0, size - self._window + 1), size - HEAD + 1):
            if size - at <= best:
                break  # earliest start first: later ones give shorter tails
            for token in self._heads.get(buffer[at : at + HEAD], ()):
                if len(token) > size - at and token.startswith(buffer[at:]):
                    return size - at
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
