"""Stream a layer's tar members, verified and bounded, and track whiteouts across layers.

A layer is never extracted and never held in memory: its raw bytes pass
through a digest check and a decompression bound into `tarfile`'s stream
mode, and each regular file is read in windows.  `Whiteouts` remembers the
files with findings from earlier layers and notices when a later layer
deletes (`.wh.<name>`, an opaque dir) or replaces them: those findings are
`deleted-file`, still whole in the earlier layer.
"""

from __future__ import annotations

import gzip
import hashlib
import posixpath
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import IO, cast

from injector.audit.errors import BadImageError
from injector.audit.image import ByteStream, Layer
from injector.audit.tarstream import DIRTYPE, Member, Readable, TarStream, normalise

__all__ = ["DIRTYPE", "Member", "TarStream", "normalise"]  # the tar reader is tarstream.py; these were here

CHUNK = 1024 * 1024
WINDOW = 4 * 1024 * 1024  # a text file is scanned this much at a time (split at a newline)
SNIFF = 8192  # a NUL byte in the first SNIFF bytes makes a file binary: not scanned
MAX_EXPANSION = 200  # a layer that inflates more than this (past BOMB_FLOOR) is refused as a bomb
BOMB_FLOOR = 256 * 1024 * 1024
MAX_LAYER_BYTES = 64 * 1024**3  # uncompressed, whatever the ratio
SKIP_SUFFIXES = (
    ".so", ".a", ".o", ".pyc", ".pyo", ".gz", ".xz", ".bz2", ".zst", ".lz4", ".zip", ".whl", ".egg", ".deb",
    ".png", ".jpg", ".jpeg", ".gif", ".ico", ".webp", ".woff", ".woff2", ".ttf", ".otf", ".mo", ".db",
    ".sqlite", ".wasm", ".node",
)  # fmt: skip
SKIP_DIRS = ("usr/share/zoneinfo/", "usr/share/locale/", "usr/share/man/", "usr/share/i18n/", "usr/lib/locale/")
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_TARGET_BYTES = 1024**4  # inflated bytes one target may make us read, whatever its size


class Budget:
    """What one target may make the audit read: in proportion to its distinct input, as for one layer.

    A layer listed again and again (or shared by many images of one archive) is read each time, but
    its raw bytes count once (and an archive file counts as its size on disk), so an archive of 30 kB
    cannot buy hours of CPU: inflated bytes (layer tars, a sparse file's holes) stay under
    BOMB_FLOOR + MAX_EXPANSION x the distinct input.
    """

    def __init__(self, input_bytes: int | None = None) -> None:
        """`input_bytes`: the target's own size when it is one file (an archive, maybe compressed)."""
        self._lock = threading.Lock()  # the layer pool's threads charge one target's budget together
        self.inflated = 0
        self.raw = input_bytes or 0
        self.fixed = input_bytes is not None
        self._raw_by_layer: dict[str, int] = {}

    def saw_raw(self, layer: str, count: int) -> None:
        if self.fixed:
            return
        with self._lock:
            before = self._raw_by_layer.get(layer, 0)
            if count > before:
                self._raw_by_layer[layer] = count
                self.raw += count - before

    def charge(self, count: int, what: str) -> None:
        with self._lock:
            self.inflated += count
            over = self.inflated > min(MAX_TARGET_BYTES, BOMB_FLOOR + MAX_EXPANSION * self.raw)
        if over:
            raise BadImageError(
                f"{what}: the target has made the audit read {self.inflated} bytes from {self.raw} bytes of "
                "distinct input (layers repeated, or inflating); refusing"
            )


class CountingReader:
    """Reads a raw blob, counting and hashing it; checks size and digest at the end."""

    def __init__(
        self, raw: ByteStream, what: str, digest: str | None, size: int | None, budget: Budget, key: str
    ) -> None:
        self.raw = raw
        self.what = what
        self.budget = budget
        self.key = key
        self.digest = digest
        self.size = size
        self.count = 0
        self.hash = hashlib.sha256() if digest else None
        self.done = False

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.raw.read(n if n and n > 0 else CHUNK)
        except (OSError, EOFError, tarfile.TarError) as exc:
            raise BadImageError(f"{self.what}: read failed ({exc.__class__.__name__})") from None
        if data:
            self.count += len(data)
            self.budget.saw_raw(self.key, self.count)
            if self.size is not None and self.count > self.size:
                raise BadImageError(f"{self.what}: longer than the {self.size} bytes its manifest says")
            if self.hash:
                self.hash.update(data)
        else:
            self.finish()
        return data

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.size is not None and self.count != self.size:
            raise BadImageError(f"{self.what}: {self.count} bytes, its manifest says {self.size}: truncated")
        if self.hash and "sha256:" + self.hash.hexdigest() != self.digest:
            raise BadImageError(f"{self.what}: content does not match its digest {self.digest}")

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class BoundedReader:
    """The uncompressed stream: hashed against the diff_id, bounded against decompression bombs."""

    def __init__(
        self,
        inner: Readable,
        raw: CountingReader,
        what: str,
        diff_id: str | None,
        compressed: bool,
        errors: tuple[type[BaseException], ...],
        budget: Budget,
    ) -> None:
        self.inner = inner
        self.budget = budget
        self.raw = raw
        self.what = what
        self.diff_id = diff_id
        self.compressed = compressed
        self.count = 0
        self.hash = hashlib.sha256() if diff_id else None
        self.errors = errors

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.inner.read(n if n and n > 0 else CHUNK)
        except BadImageError:
            raise
        except self.errors as exc:
            raise BadImageError(f"{self.what}: corrupt compressed data ({_first_line(exc)})") from None
        if data:
            self.count += len(data)
            self.budget.charge(len(data), self.what)
            if self.count > MAX_LAYER_BYTES or (
                self.compressed and self.count > BOMB_FLOOR and self.count > MAX_EXPANSION * max(self.raw.count, 1)
            ):
                raise BadImageError(
                    f"{self.what}: inflates past {self.count} bytes from {self.raw.count}: "
                    "refusing a decompression bomb"
                )
            if self.hash:
                self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass
        if self.hash and "sha256:" + self.hash.hexdigest() != self.diff_id:
            raise BadImageError(f"{self.what}: content does not match its diff_id {self.diff_id}")
        self.raw.drain()


def open_layer_stream(
    layer: Layer, what: str, budget: Budget | None = None
) -> tuple[BoundedReader, Callable[[], None]]:
    """-> (uncompressed stream, close).  Compression is told by magic bytes, not by media type."""
    raw_handle = layer.open()
    budget = budget if budget is not None else Budget()
    key = layer.blob_digest or layer.diff_id or layer.name
    raw = CountingReader(raw_handle, what, layer.blob_digest, layer.size, budget, key)
    head = raw.read(4)
    prefixed = _Prefixed(head, raw)
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)  # what the decompressor raises
    if head[:2] == b"\x1f\x8b":
        inner: Readable = gzip.GzipFile(fileobj=cast("IO[bytes]", prefixed), mode="rb")
        compressed = True
    elif head == ZSTD_MAGIC:
        inner, zstd_error = _zstd_reader(prefixed, what)
        errors = (*errors, zstd_error)
        compressed = True
    elif head[:3] == b"BZh" or head[:4] == b"\xfd7zX":
        raise BadImageError(f"{what}: bzip2/xz-compressed layers are not supported")
    else:
        inner = prefixed
        compressed = False
    return BoundedReader(inner, raw, what, layer.diff_id, compressed, errors, budget), raw_handle.close


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_MAX_WINDOW = 32 * 1024 * 1024  # what a zstd frame may make us hold; podman/skopeo use a few MiB


def _zstd_reader(raw: _Prefixed, what: str) -> tuple[Readable, type[Exception]]:
    """An OCI `tar+zstd` layer (podman --compression-format zstd[:chunked]), streamed like gzip."""
    try:
        import zstandard  # only the audit, only for a zstd layer: see README "Dependencies"
    except ImportError:
        raise BadImageError(f"{what}: a zstd-compressed layer, and the zstandard module is not installed") from None
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    # Several frames (zstd:chunked writes one per file group, plus skippable frames of metadata).
    reader = decompressor.stream_reader(cast("IO[bytes]", raw), read_size=CHUNK, read_across_frames=True, closefd=False)
    return reader, zstandard.ZstdError


class _Prefixed:
    def __init__(self, head: bytes, rest: CountingReader) -> None:
        self.head = head
        self.rest = rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0 or n >= len(self.head):
                data, self.head = self.head, b""
            else:
                data, self.head = self.head[:n], self.head[n:]
            return data
        return self.rest.read(n)


def walk(stream: BoundedReader, what: str) -> Iterator[tuple[Member, Readable | None]]:
    """Each member with a reader of its content (files only); must be consumed in order."""
    yield from TarStream(stream, what, lambda count: stream.budget.charge(count, what)).members()


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:100]


def read_windows(content: Readable, what: str, *, always: bool = False) -> Iterator[bytes]:
    """A text file's content in windows that end at a newline; nothing for a binary file, unless `always`."""
    head = content.read(SNIFF)
    if b"\0" in head and not always:
        return
    carry = head
    while True:
        chunk = content.read(WINDOW)
        if not chunk:
            break
        buffer = carry + chunk
        cut = buffer.rfind(b"\n") + 1
        if cut == 0 and len(buffer) < WINDOW * 2:
            carry = buffer
            continue
        cut = cut or len(buffer)
        yield buffer[:cut]
        carry = buffer[cut:]
    if carry:
        yield carry


def worth_reading(path: str) -> bool:
    """Skip by path only (docs/audit.md): never a known credential file, wherever it is and whatever its suffix."""
    from injector.audit.detect import is_known_credential_file

    lower = path.lower()
    if not lower.endswith(SKIP_SUFFIXES) and not lower.lstrip("/").startswith(SKIP_DIRS):
        return True
    return is_known_credential_file(path)


class Whiteouts:
    """Files with findings in earlier layers, and whether a later layer deleted or replaced them."""

    def __init__(self) -> None:
        self.candidates: dict[str, int] = {}  # path -> layer it was found in (latest)
        self.deleted: dict[tuple[str, int], int] = {}  # (path, layer) -> the layer that deleted it
        self._dirs: set[str] = set()  # every ancestor directory of a candidate

    def found(self, path: str, layer: int) -> None:
        self.candidates[path] = layer
        parent = posixpath.dirname(path)
        while parent not in ("/", ""):
            self._dirs.add(parent)
            parent = posixpath.dirname(parent)

    def seen(self, member: Member, layer: int) -> None:
        """Called for every member of `layer`, in order, before its own findings are recorded."""
        if not self.candidates:
            return
        directory, name = posixpath.split(member.path)
        if name == OPAQUE:
            self._delete_under(directory, layer, including=False)
        elif name.startswith(WHITEOUT):
            self._delete_under(posixpath.join(directory, name[len(WHITEOUT) :]), layer, including=True)
        elif not member.isdir():
            self._delete_under(member.path, layer, including=True)

    def _delete_under(self, path: str, layer: int, *, including: bool) -> None:
        if including and path in self.candidates:
            self._mark(path, layer)
        if path in self._dirs or path == "/":
            prefix = path.rstrip("/") + "/"
            for candidate in [c for c in self.candidates if c.startswith(prefix)]:
                self._mark(candidate, layer)

    def _mark(self, path: str, layer: int) -> None:
        found_in = self.candidates.pop(path)
        if found_in < layer:
            self.deleted[(path, found_in)] = layer
        else:
            self.candidates[path] = found_in
