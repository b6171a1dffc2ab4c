"""A tar reader that sees exactly what Go's `archive/tar` sees (docker, containerd, podman, skopeo).

The engines extract layers, and read `docker save` archives, with Go's
archive/tar; any place where our reading differs is a place to hide a file
from the audit.  So this parser follows archive/tar's `Reader.Next` (Go 1.19
and later) rule for rule, and tests/test_audit_tar_go.py checks it against
the real thing:

- a header is accepted only with a valid checksum; every numeric field is
  parsed as Go parses it (octal trimmed of spaces and NULs, or base-256 two's
  complement) and a field Go refuses is refused;
- pax `x` records apply to the next member only, and a second `x` replaces
  the first; a global `g` header is never applied to anything (and drops
  what came before it, as Go does);
- a GNU long name or link (`L`, `K`) wins over a pax `path`/`linkpath`;
- sparse files (GNU `S`, pax 0.0, 0.1 and 1.0) are read with their holes as
  zeros, as Go and GNU tar extract them; only the version records Go knows
  make a file sparse, and then `GNU.sparse.name` names it;
- a negative size (octal, base-256 or pax) is refused, never read backwards.

Content is never held whole: headers are sliced out of 1 MiB reads, skipped
members are consumed in large reads (the reader below still hashes them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from injector.audit.errors import BadImageError

CHUNK = 1024 * 1024
BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
DIRTYPE = b"5"
REGULAR_TYPES = (b"0", b"7", b"S")  # after Go's reading ('\0' is '0' or '5'): files with content to extract
HEADER_ONLY_TYPES = (b"1", b"2", b"3", b"4", b"5", b"6")  # Go's isHeaderOnlyType: any size field is not content
MAX_SPECIAL = 1024 * 1024  # Go's maxSpecialFileSize: a pax or GNU long-name record past this is an error
MAX_SPARSE_ENTRIES = 65536  # ours: Go has no bound (docs/audit.md); a real sparse file has a few
MAX_SPARSE_TOKEN = 4096  # ours, for a 1.0 sparse map: a decimal number is 20 digits
INT64_MAX = (1 << 63) - 1
# Go's Format bits (archive/tar/format.go)
FORMAT_V7, FORMAT_USTAR, FORMAT_PAX, FORMAT_GNU, FORMAT_STAR = 1, 2, 4, 8, 16
GO_INT = re.compile(rb"[+-]?[0-9]+")
GO_OCTAL = re.compile(rb"[0-7]+")


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


@dataclass
class Member:
    path: str  # absolute path in the image, "/etc/app/.env"
    type: bytes  # the tar type flag as Go reports it: b"0" file, b"5" directory, b"2" symlink...
    size: int  # bytes of (logical) content: what an extractor writes
    linkname: str = ""
    data_offset: int = -1  # where the physical content starts in the stream (the outer archive's index)
    physical: int = 0  # bytes of content stored (less than `size` for a sparse file)
    sparse: bool = False
    name: str = ""  # the name as the archive gives it (before normalising)

    def isdir(self) -> bool:
        return self.type == DIRTYPE


def normalise(name: str, what: str) -> str:
    """An absolute image path; refuse `..` (an extractor would write outside the root, or refuse it)."""
    if "/." not in name and "//" not in name and not name.startswith("."):
        return "/" + name.strip("/")  # the common case: no `.` or `..` component, nothing to clean
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadImageError(f"{what}: member {name!r} climbs out of the root with '..'")
    return "/" + "/".join(parts)


class _CorruptError(Exception):
    """Go's ErrHeader (or a read error) while parsing; becomes one BadImageError line."""


def go_int(text: bytes) -> int | None:
    """strconv.ParseInt(text, 10, 64): a sign, digits, nothing else, in range; None where Go errs."""
    if not GO_INT.fullmatch(text):
        return None
    value = int(text)
    return value if -INT64_MAX - 1 <= value <= INT64_MAX else None


def _nts(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _octal(field: bytes) -> int:
    """Go's parser.parseOctal: trim spaces and NULs at both ends, up to a NUL, octal digits only."""
    text = _nts(field.strip(b" \0"))
    if not text:
        return 0
    if not GO_OCTAL.fullmatch(text):
        raise _CorruptError("a header number")
    value = int(text, 8)
    if value >= 1 << 64:
        raise _CorruptError("a header number")
    return value - (1 << 64) if value > INT64_MAX else value


def _numeric(field: bytes) -> int:
    """Go's parser.parseNumeric: base-256 two's complement when the top bit is set, else octal."""
    if field and field[0] & 0x80:
        invert = 0xFF if field[0] & 0x40 else 0
        value = 0
        for index, byte in enumerate(field):
            byte ^= invert
            if index == 0:
                byte &= 0x7F
            if value >> 56:
                raise _CorruptError("a base-256 number overflows")
            value = value << 8 | byte
        if value >> 63:
            raise _CorruptError("a base-256 number overflows")
        return ~value if invert else value
    return _octal(field)


def _format(header: bytes) -> int:
    """Go's block.getFormat: 0 (unknown: refused) unless the checksum holds."""
    try:
        stored = _octal(header[148:156])
    except _CorruptError:
        return 0
    unsigned = sum(header) - sum(header[148:156]) + 8 * 0x20
    signed = unsigned - 256 * sum(1 for b in header[:148] + header[156:] if b > 127)
    if stored not in (unsigned, signed):
        return 0
    magic, version, trailer = header[257:263], header[263:265], header[508:512]
    if magic == b"ustar\0":
        return FORMAT_STAR if trailer == b"tar\0" else FORMAT_USTAR | FORMAT_PAX
    if magic == b"ustar " and version == b" \0":
        return FORMAT_GNU
    return FORMAT_V7


@dataclass
class _Header:
    kind: bytes
    name: bytes
    linkname: bytes
    size: int
    format: int


def _parse_header(header: bytes) -> _Header:
    """Go's Reader.readHeader for one (checksummed) block; a number Go refuses is refused."""
    fmt = _format(header)
    if not fmt:
        raise _CorruptError("bad header checksum")
    name = _nts(header[0:100])
    size = _numeric(header[124:136])
    for start, end in ((100, 108), (108, 116), (116, 124), (136, 148)):  # mode, uid, gid, mtime
        _numeric(header[start:end])
    prefix = b""
    if fmt > FORMAT_V7:
        _numeric(header[329:337])  # devmajor
        _numeric(header[337:345])  # devminor
        if fmt & (FORMAT_USTAR | FORMAT_PAX):
            prefix = _nts(header[345:500])
        elif fmt & FORMAT_STAR:
            prefix = _nts(header[345:476])
            _numeric(header[476:488])
            _numeric(header[488:500])
        elif fmt & FORMAT_GNU:
            try:  # Go's fallback for pre-1.8 Go writers: unparsable GNU times are a USTAR prefix
                for start in (345, 357):
                    if header[start]:
                        _numeric(header[start : start + 12])
            except _CorruptError:
                candidate = _nts(header[345:500])
                if all(b < 0x80 for b in candidate):
                    prefix = candidate
        if prefix:
            name = prefix + b"/" + name
    return _Header(header[156:157], name, _nts(header[157:257]), size, fmt)


SPARSE = "GNU.sparse."


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """Go's parsePAX: every `LEN key=value\\n` record, or an error; sparse 0.0 pairs become a 0.1 map."""
    records: dict[bytes, bytes] = {}
    sparse_map: list[bytes] = []
    rest = data
    while rest:
        space = rest.find(b" ")
        if space < 0:
            raise _CorruptError("a pax record")
        length = go_int(rest[:space])
        if length is None or length < 5 or length > len(rest):
            raise _CorruptError("a pax record")
        body_length = length - (space + 1)
        if body_length <= 0:
            raise _CorruptError("a pax record")
        body = rest[space + 1 :]
        record, newline, rest = body[: body_length - 1], body[body_length - 1 : body_length], body[body_length:]
        if newline != b"\n" or b"=" not in record:
            raise _CorruptError("a pax record")
        key, _, value = record.partition(b"=")
        if not key or (b"\0" in value if key in (b"path", b"linkpath", b"uname", b"gname") else b"\0" in key):
            raise _CorruptError("a pax record")
        if key in (b"GNU.sparse.offset", b"GNU.sparse.numbytes"):
            expected = b"GNU.sparse.offset" if len(sparse_map) % 2 == 0 else b"GNU.sparse.numbytes"
            if key != expected or b"," in value:
                raise _CorruptError("a pax sparse record")
            sparse_map.append(value)
        else:
            records[key] = value
    if sparse_map:
        records[b"GNU.sparse.map"] = b",".join(sparse_map)
    return records


def _pax_time(value: bytes) -> None:
    seconds, _, fraction = value.partition(b".")
    if go_int(seconds) is None or fraction.strip(b"0123456789"):
        raise _CorruptError("a pax time")


def _merge_pax(header: _Header, records: dict[bytes, bytes]) -> None:
    """Go's mergePAX: an empty value keeps the header's own; a number Go cannot parse is an error."""
    for key, value in records.items():
        if not value:
            continue
        if key == b"path":
            header.name = value
        elif key == b"linkpath":
            header.linkname = value
        elif key in (b"size", b"uid", b"gid"):
            number = go_int(value)
            if number is None:
                raise _CorruptError(f"pax {key.decode()}")
            if key == b"size":
                header.size = number
        elif key in (b"atime", b"mtime", b"ctime"):
            _pax_time(value)


class TarStream:
    """A tar parsed straight from a byte stream, as Go's archive/tar parses it (module docstring)."""

    def __init__(self, stream: Readable, what: str, charge: Callable[[int], None] | None = None) -> None:
        self.stream = stream
        self.what = what
        self.charge = charge  # told of bytes that come from no input (a sparse file's holes)
        self.buf = b""
        self.pos = 0
        self.consumed = 0  # bytes read from the stream so far

    @property
    def offset(self) -> int:
        """How far into the stream the parser is."""
        return self.consumed - (len(self.buf) - self.pos)

    def _available(self) -> int:
        return len(self.buf) - self.pos

    def _read(self, n: int) -> bytes:
        chunk = self.stream.read(n)
        self.consumed += len(chunk)
        return chunk

    def _fill(self, need: int) -> bool:
        """At least `need` bytes buffered; False at the end of the stream."""
        while self._available() < need:
            chunk = self._read(max(CHUNK, need))
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
            chunk = self._read(missing)
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
        seek = getattr(self.stream, "skip_forward", None)
        if seek is not None:  # a plain file: no need to read what nobody looks at
            seek(missing)
            self.consumed += missing
            return
        while missing > 0:
            chunk = self._read(min(missing, CHUNK * 4))
            if not chunk:
                raise BadImageError(f"{self.what}: corrupt tar (truncated member)")
            missing -= len(chunk)

    def members(self) -> Iterator[tuple[Member, Readable | None]]:
        """Each member with a reader of its content (files only); must be consumed in order."""
        try:
            yield from self._members()
        except _CorruptError as exc:
            raise BadImageError(f"{self.what}: corrupt tar ({exc})") from None

    def _members(self) -> Iterator[tuple[Member, Readable | None]]:
        while True:  # one round per member, as one call of Go's Reader.Next
            records: dict[bytes, bytes] | None = None
            long_name = long_link = b""
            while True:
                block = self._next_header()
                if block is None:
                    return
                header = _parse_header(block)
                if header.kind not in HEADER_ONLY_TYPES and header.size < 0:
                    raise _CorruptError("a negative size")
                if header.kind in (b"x", b"g"):
                    found = _pax_records(self._special(header.size))
                    if header.kind == b"g":
                        break  # never applied to a member; what came before it is dropped, as in Go
                    records = found
                    continue
                if header.kind in (b"L", b"K"):
                    value = _nts(self._special(header.size))
                    if header.kind == b"L":
                        long_name = value
                    else:
                        long_link = value
                    continue
                yield from self._member(block, header, records, long_name, long_link)
                break

    def _member(
        self,
        block: bytes,
        header: _Header,
        records: dict[bytes, bytes] | None,
        long_name: bytes,
        long_link: bytes,
    ) -> Iterator[tuple[Member, Readable | None]]:
        if records:
            _merge_pax(header, records)
        if long_name:
            header.name = long_name
        if long_link:
            header.linkname = long_link
        kind = header.kind
        if kind == b"\0":
            kind = DIRTYPE if header.name.endswith(b"/") else b"0"
        physical = 0 if kind in HEADER_ONLY_TYPES else header.size
        if physical < 0:
            raise _CorruptError("a negative size")
        content = MemberReader(self, physical)
        if kind == b"S":
            fragments: list[tuple[int, int]] | None = self._old_gnu_sparse(block, header)
        else:
            fragments = self._pax_sparse(header, records or {}, content)
        if fragments is not None and (kind in HEADER_ONLY_TYPES or not _valid_sparse(fragments, header.size)):
            raise _CorruptError("a sparse map")
        start = self.offset
        name = header.name.decode("utf-8", "surrogateescape")
        member = Member(
            path=normalise(name, self.what),
            type=kind,
            size=header.size if kind not in HEADER_ONLY_TYPES else 0,
            linkname=header.linkname.decode("utf-8", "surrogateescape"),
            data_offset=start,
            physical=content.left,
            sparse=fragments is not None,
            name=name,
        )
        reader: Readable | None = None
        if kind in REGULAR_TYPES and member.size > 0:
            if fragments is None:
                reader = content
            else:
                if sum(length for _, length in fragments) != content.left:
                    raise _CorruptError("a sparse file's data does not match its map")  # Go: errMissData/errUnrefData
                reader = SparseReader(content, fragments, member.size, self.charge)
        elif fragments is not None and sum(length for _, length in fragments) != content.left:
            raise _CorruptError("a sparse file's data does not match its map")
        yield member, reader
        self.skip(content.left + (-physical % BLOCK))

    def _next_header(self) -> bytes | None:
        """The next header block; None at the end of the archive (Go: EOF, or two zero blocks)."""
        block = self._block_or_end()
        if block is None:
            return None
        if block == ZERO_BLOCK:
            second = self._block_or_end()
            if second is None or second == ZERO_BLOCK:
                return None  # the caller drains (and verifies) the rest
            raise _CorruptError("a zero block, then a header")
        return block

    def _block_or_end(self) -> bytes | None:
        if not self._fill(BLOCK):
            if self._available():
                raise BadImageError(f"{self.what}: corrupt tar (truncated header)")
            return None  # no end-of-archive blocks: accepted, as tar and Go's archive/tar do
        block = self.buf[self.pos : self.pos + BLOCK]
        self.pos += BLOCK
        return block

    def _special(self, size: int) -> bytes:
        """A pax or GNU long-name record's content (Go's readSpecialFile), and its padding."""
        if size > MAX_SPECIAL:
            raise _CorruptError(f"a {size}-byte extended header")
        data = self.take(size)
        self.skip(-size % BLOCK)
        return data

    def _old_gnu_sparse(self, block: bytes, header: _Header) -> list[tuple[int, int]]:
        """Go's readOldGNUSparseMap: the map in the header and its extension blocks; the size is the real one."""
        if header.format != FORMAT_GNU:
            raise _CorruptError("a sparse header that is not GNU")
        header.size = _numeric(block[483:495])
        fragments: list[tuple[int, int]] = []
        entries, extended = block[386:482], block[482]
        while True:
            for index in range(0, len(entries), 24):
                if entries[index] == 0:
                    break
                fragments.append((_numeric(entries[index : index + 12]), _numeric(entries[index + 12 : index + 24])))
                if len(fragments) > MAX_SPARSE_ENTRIES:
                    raise _CorruptError("a sparse map with too many entries")
            if not extended:
                return fragments
            extension = self.take(BLOCK)
            entries, extended = extension[:504], extension[504]

    def _pax_sparse(
        self, header: _Header, records: dict[bytes, bytes], content: MemberReader
    ) -> list[tuple[int, int]] | None:
        """Go's readGNUSparsePAXHeaders: None unless the records make the file sparse."""
        major, minor = records.get(b"GNU.sparse.major", b""), records.get(b"GNU.sparse.minor", b"")
        if major == b"0" and minor in (b"0", b"1"):
            version_1 = False
        elif major == b"1" and minor == b"0":
            version_1 = True
        elif major or minor:
            return None  # a version Go does not know: an ordinary file
        elif records.get(b"GNU.sparse.map"):
            version_1 = False
        else:
            return None
        if records.get(b"GNU.sparse.name"):
            header.name = records[b"GNU.sparse.name"]
        size = records.get(b"GNU.sparse.size") or records.get(b"GNU.sparse.realsize")
        if size:
            number = go_int(size)
            if number is None:
                raise _CorruptError("a sparse size")
            header.size = number
        return _sparse_map_1_0(content) if version_1 else _sparse_map_0_1(records)


def _sparse_map_0_1(records: dict[bytes, bytes]) -> list[tuple[int, int]]:
    count = go_int(records.get(b"GNU.sparse.numblocks", b""))
    if count is None or count < 0 or count > MAX_SPARSE_ENTRIES:
        raise _CorruptError("a sparse map")
    numbers = records.get(b"GNU.sparse.map", b"").split(b",")
    if numbers == [b""]:
        numbers = []
    if len(numbers) != 2 * count:
        raise _CorruptError("a sparse map")
    return _pairs(numbers)


def _sparse_map_1_0(content: MemberReader) -> list[tuple[int, int]]:
    """The map at the start of the data: decimal numbers a line each, in whole blocks."""
    tokens: list[bytes] = []
    partial = b""

    def feed(count: int) -> None:
        nonlocal partial
        while len(tokens) < count:
            block = content.read(BLOCK)
            if len(block) < BLOCK:
                raise _CorruptError("a truncated sparse map")
            lines = (partial + block).split(b"\n")
            partial = lines.pop()
            tokens.extend(lines)
            if len(partial) > MAX_SPARSE_TOKEN:
                raise _CorruptError("a sparse map")

    feed(1)
    count = go_int(tokens[0])
    if count is None or count < 0 or count > MAX_SPARSE_ENTRIES:
        raise _CorruptError("a sparse map")
    feed(1 + 2 * count)
    return _pairs(tokens[1 : 1 + 2 * count])


def _pairs(numbers: list[bytes]) -> list[tuple[int, int]]:
    fragments = []
    for index in range(0, len(numbers), 2):
        offset, length = go_int(numbers[index]), go_int(numbers[index + 1])
        if offset is None or length is None:
            raise _CorruptError("a sparse map")
        fragments.append((offset, length))
    return fragments


def _valid_sparse(fragments: list[tuple[int, int]], size: int) -> bool:
    """Go's validateSparseEntries."""
    if size < 0:
        return False
    previous_end = 0
    for offset, length in fragments:
        if offset < 0 or length < 0 or offset > INT64_MAX - length or offset + length > size:
            return False
        if previous_end > offset:
            return False
        previous_end = offset + length
    return True


class MemberReader:
    """One member's stored content: `read(n)` gives exactly min(n, what is left) bytes."""

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


class SparseReader:
    """A sparse file's logical content: its data fragments in place, zeros in the holes."""

    def __init__(
        self,
        stored: MemberReader,
        fragments: list[tuple[int, int]],
        size: int,
        charge: Callable[[int], None] | None,
    ) -> None:
        self.stored = stored
        self.fragments = [f for f in fragments if f[1] > 0]
        self.index = 0
        self.pos = 0
        self.size = size
        self.charge = charge

    @property
    def left(self) -> int:
        return self.stored.left

    def read(self, n: int = -1) -> bytes:
        count = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        pieces = []
        while count > 0:
            if self.index < len(self.fragments):
                offset, length = self.fragments[self.index]
                if self.pos >= offset + length:
                    self.index += 1
                    continue
                if self.pos < offset:
                    piece = self._zeros(min(count, offset - self.pos))
                else:
                    piece = self.stored.read(min(count, offset + length - self.pos))
            else:
                piece = self._zeros(count)
            pieces.append(piece)
            self.pos += len(piece)
            count -= len(piece)
        return b"".join(pieces)

    def _zeros(self, count: int) -> bytes:
        if self.charge is not None:
            self.charge(count)  # holes cost no input: they count against the target's budget
        return bytes(count)
