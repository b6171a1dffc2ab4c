"""Tar bytes written field by field, for the forms `tarfile` will not write: hostile layers for the audit tests.

Every header is a raw 512-byte block with a correct checksum (unless asked
otherwise), so a test can put anything Go's archive/tar might accept into any
field: leading NULs in numbers, base-256 sizes, negative sizes, a ustar magic
without its version, a STAR trailer, GNU sparse maps.
"""

from __future__ import annotations

BLOCK = 512


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def header(
    name: bytes,
    kind: bytes = b"0",
    size: int | bytes = 0,
    *,
    linkname: bytes = b"",
    magic: bytes = b"ustar\x0000",
    prefix: bytes = b"",
    fields: dict[int, bytes] | None = None,
    checksum: bool = True,
) -> bytes:
    """One header block; `size` as a number (octal) or raw field bytes; `fields` patches offsets last."""
    block = bytearray(BLOCK)
    block[0:100] = name[:100].ljust(100, b"\0")
    block[100:108] = octal(0o644, 8)
    block[108:116] = octal(0, 8)
    block[116:124] = octal(0, 8)
    block[124:136] = (octal(size, 12) if isinstance(size, int) else size).ljust(12, b"\0")[:12]
    block[136:148] = octal(0, 12)
    block[156:157] = kind
    block[157:257] = linkname[:100].ljust(100, b"\0")
    block[257:265] = magic.ljust(8, b"\0")[:8]
    block[345:500] = prefix[:155].ljust(155, b"\0")
    for offset, value in (fields or {}).items():
        block[offset : offset + len(value)] = value
    if checksum:
        block[148:156] = b" " * 8
        block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def member(name: bytes, content: bytes = b"", kind: bytes = b"0", **options: object) -> bytes:
    return header(name, kind, len(content), **options) + pad(content)  # type: ignore[arg-type]


def pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(b"%d" % length) + len(body) != length:
        length += 1
    return b"%d" % length + body


def pax(records: list[tuple[bytes, bytes]], kind: bytes = b"x", name: bytes = b"PaxHeaders/x") -> bytes:
    data = b"".join(pax_record(k, v) for k, v in records)
    return member(name, data, kind)


def gnu_long(kind: bytes, value: bytes) -> bytes:
    """A GNU long name (L) or long link (K) record."""
    return member(b"././@LongLink", value + b"\0", kind, magic=b"ustar  \0")


def old_gnu_sparse(name: bytes, fragments: list[tuple[int, int]], real_size: int, data: bytes) -> bytes:
    """A GNU type-S member with up to four map entries in its header (the data is the fragments, packed)."""
    fields = {483: octal(real_size, 12)}
    for index, (offset, length) in enumerate(fragments[:4]):
        fields[386 + 24 * index] = octal(offset, 12)
        fields[398 + 24 * index] = octal(length, 12)
    return header(name, b"S", len(data), magic=b"ustar  \0", fields=fields) + pad(data)


END = b"\0" * (2 * BLOCK)
