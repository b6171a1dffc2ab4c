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
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Protocol, cast

from injector.audit.errors import BadImageError
from injector.audit.image import ByteStream, Layer

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


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class CountingReader:
    """Reads a raw blob, counting and hashing it; checks size and digest at the end."""

    def __init__(self, raw: ByteStream, what: str, digest: str | None, size: int | None) -> None:
        self.raw = raw
        self.what = what
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
    ) -> None:
        self.inner = inner
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


def open_layer_stream(layer: Layer, what: str) -> tuple[BoundedReader, Callable[[], None]]:
    """-> (uncompressed stream, close).  Compression is told by magic bytes, not by media type."""
    raw_handle = layer.open()
    raw = CountingReader(raw_handle, what, layer.blob_digest, layer.size)
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
    return BoundedReader(inner, raw, what, layer.diff_id, compressed, errors), raw_handle.close


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


@dataclass
class Member:
    path: str  # absolute path in the image, "/etc/app/.env"
    type: bytes  # the tar type flag: b"0" file, b"5" directory, b"2" symlink...
    size: int  # bytes of content that follow the header

    def isdir(self) -> bool:
        return self.type == DIRTYPE


def normalise(name: str, what: str) -> str:
    """An absolute image path; refuse `..` (an extractor would write outside the root)."""
    if "/." not in name and "//" not in name and not name.startswith("."):
        return "/" + name.strip("/")  # the common case: no `.` or `..` component, nothing to clean
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadImageError(f"{what}: member {name!r} climbs out of the root with '..'")
    return "/" + "/".join(parts)


BLOCK = 512
REGULAR_TYPES = (b"0", b"\0", b"7")
DIRTYPE = b"5"
HEADER_ONLY_TYPES = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, dirs, fifos: any size field is not content
POSIX_MAGIC = b"ustar\x0000"


class TarStream:
    """A layer's tar, parsed straight from the (already verified-as-read) byte stream.

    `tarfile`'s stream mode costs a Python-level copy per 512-byte block and a
    TarInfo per member; here headers are sliced out of 1 MiB reads, and members
    nobody reads are skipped by reading (and so hashing) their bytes in large
    pieces, never copied into Python objects one block at a time.  Formats: ustar,
    GNU (long names, long links, sparse headers) and pax (path, linkpath, size).
    """

    def __init__(self, stream: Readable, what: str) -> None:
        self.stream = stream
        self.what = what
        self.buf = b""
        self.pos = 0

    def _available(self) -> int:
        return len(self.buf) - self.pos

    def _fill(self, need: int) -> bool:
        """At least `need` bytes buffered; False at the end of the stream."""
        while self._available() < need:
            chunk = self.stream.read(max(CHUNK, need))
            if not chunk:
                return False
            self.buf = self.buf[self.pos :] + chunk
            self.pos = 0
        return True

    def take(self, count: int) -> bytes:
        """Exactly `count` bytes, or a truncated-tar error."""
        if self._available() >= count:
            data = self.buf[self.pos : self.pos + count]
            self.pos += count
            return data
        pieces = [self.buf[self.pos :]]
        missing = count - len(pieces[0])
        self.buf, self.pos = b"", 0
        while missing > 0:
            chunk = self.stream.read(missing)
            if not chunk:
                raise BadImageError(f"{self.what}: corrupt tar (truncated member)")
            pieces.append(chunk)
            missing -= len(chunk)
        return b"".join(pieces)

    def skip(self, count: int) -> None:
        """Consume `count` bytes without keeping them (the reader below still hashes them)."""
        available = self._available()
        if count <= available:
            self.pos += count
            return
        missing = count - available
        self.buf, self.pos = b"", 0
        while missing > 0:
            chunk = self.stream.read(min(missing, CHUNK * 4))
            if not chunk:
                raise BadImageError(f"{self.what}: corrupt tar (truncated member)")
            missing -= len(chunk)

    def members(self) -> Iterator[tuple[Member, MemberReader | None]]:
        """Each member with a reader of its content (regular files only); must be consumed in order."""
        pax_global: dict[str, str] = {}
        pending: dict[str, str] = {}  # from GNU L/K and pax x headers, for the next member
        while (header := self._next_header()) is not None:
            kind = header[156:157]
            size = _number(header[124:136], self.what)
            if kind in EXTENDED_TYPES:
                self._extended(kind, size, pax_global if kind == b"g" else pending)
                continue
            if kind == b"S" and header[482]:
                self._skip_sparse_extensions()
            fields = {**pax_global, **pending} if pending or pax_global else NO_FIELDS
            pending = {}
            member, sparse = self._member(header, kind, size, fields)
            reader = None
            if member.type in REGULAR_TYPES and member.size > 0 and not sparse:
                reader = MemberReader(self, member.size)
            yield member, reader
            left = reader.left if reader is not None else member.size
            self.skip(left + (-member.size % BLOCK))

    def _next_header(self) -> bytes | None:
        """The next header block, checked; None at the end of the archive."""
        if not self._fill(BLOCK):
            if self._available():
                raise BadImageError(f"{self.what}: corrupt tar (truncated header)")
            return None  # no end-of-archive blocks: accepted, as tar and Go's archive/tar do
        header = self.buf[self.pos : self.pos + BLOCK]
        self.pos += BLOCK
        if header == ZERO_BLOCK:
            return None  # end of archive; the caller drains (and verifies) the rest
        _check_sum(header, self.what)
        return header

    def _extended(self, kind: bytes, size: int, into: dict[str, str]) -> None:
        """A GNU long name (L) or link (K), or pax records (x: next member, g: all that follow)."""
        if size > MAX_EXTENDED_HEADER:
            raise BadImageError(f"{self.what}: corrupt tar (a {size}-byte extended header)")
        data = self.take(size)
        self.skip(-size % BLOCK)
        if kind == b"L":
            into["path"] = _nts(data)
        elif kind == b"K":
            into["linkpath"] = _nts(data)
        else:
            into.update(_pax_records(data, self.what))

    def _skip_sparse_extensions(self) -> None:
        while True:  # old GNU sparse: extension blocks precede the data
            if not self.take(BLOCK)[504]:
                return

    def _member(self, header: bytes, kind: bytes, size: int, fields: dict[str, str]) -> tuple[Member, bool]:
        """-> (the member, whether it is sparse), its name and size from pax/GNU fields when given."""
        if "path" in fields:
            name = fields["path"]
        else:
            name = _nts(header[0:100])
            if header[257:265] == POSIX_MAGIC and header[345]:
                name = _nts(header[345:500]) + "/" + name
        if "size" in fields:
            try:
                size = int(fields["size"])
            except ValueError:
                raise BadImageError(f"{self.what}: corrupt tar (pax size {fields['size'][:20]!r})") from None
        sparse = kind == b"S" or (fields is not NO_FIELDS and any(key.startswith("GNU.sparse.") for key in fields))
        if kind == b"\0" and name.endswith("/"):
            kind = DIRTYPE
        content_size = 0 if kind in HEADER_ONLY_TYPES else size
        return Member(normalise(name, self.what), kind, content_size), sparse


EXTENDED_TYPES = (b"L", b"K", b"x", b"g")
MAX_EXTENDED_HEADER = 1024 * 1024
ZERO_BLOCK = bytes(BLOCK)
NO_FIELDS: dict[str, str] = {}  # never written to: shared by every member without extended headers


class MemberReader:
    """One member's content: `read(n)` gives exactly min(n, what is left) bytes."""

    def __init__(self, tar: TarStream, size: int) -> None:
        self.tar = tar
        self.left = size

    def read(self, n: int = -1) -> bytes:
        count = self.left if n is None or n < 0 else min(n, self.left)
        if count <= 0:
            return b""
        data = self.tar.take(count)
        self.left -= count
        return data


def _nts(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(field: bytes, what: str) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 for sizes past 8 GiB
        value = int.from_bytes(field[1:], "big")
        return -value if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise BadImageError(f"{what}: corrupt tar (a header number {text[:12]!r})") from None


def _check_sum(header: bytes, what: str) -> None:
    stored = _number(header[148:156], what)
    unsigned = sum(header[:148]) + sum(header[156:]) + 8 * 0x20  # the field itself counts as spaces
    if stored != unsigned:
        # old tars summed signed chars
        signed = sum(b - 256 if b > 127 else b for b in header[:148] + b" " * 8 + header[156:])
        if stored != signed:
            raise BadImageError(f"{what}: corrupt tar (bad header checksum)")


def _pax_records(data: bytes, what: str) -> dict[str, str]:
    """`LEN key=value\\n` records; only the keys this reader uses are kept."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        if space < 0:
            break
        try:
            length = int(data[position:space])
        except ValueError:
            raise BadImageError(f"{what}: corrupt tar (a pax record)") from None
        if length <= 0 or position + length > len(data):
            raise BadImageError(f"{what}: corrupt tar (a pax record)")
        key, _, value = data[space + 1 : position + length - 1].partition(b"=")
        name = key.decode("utf-8", "replace")
        if name in ("path", "linkpath", "size") or name.startswith("GNU.sparse."):
            records[name] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


def walk(stream: BoundedReader, what: str) -> Iterator[tuple[Member, MemberReader | None]]:
    """Each member with a reader of its content (regular files only); must be consumed in order."""
    yield from TarStream(stream, what).members()


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:100]


def read_windows(content: MemberReader, what: str) -> Iterator[bytes]:
    """A text file's content in windows that end at a newline; nothing for a binary file."""
    head = content.read(SNIFF)
    if b"\0" in head:
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
    lower = path.lower()
    return not lower.endswith(SKIP_SUFFIXES) and not lower.lstrip("/").startswith(SKIP_DIRS)


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
