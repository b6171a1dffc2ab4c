"""The audit's own tar reader (injector/audit/layers.py, TarStream): header forms real layers use.

Pure logic on bytes that `tarfile` writes (then patched where `tarfile` cannot
write the form), read back through the same function the audit uses; the
end-to-end forms (GNU, ustar, pax long names in real images) are in
tests/test_audit_targets.py.
"""

from __future__ import annotations

import io
import tarfile

import pytest

from injector.audit.errors import BadImageError
from injector.audit.layers import TarStream


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.GNU_FORMAT, end: bool = True) -> bytes:
    buffer = io.BytesIO()
    for info, data in entries:
        buffer.write(info.tobuf(format=fmt))
        if data:
            buffer.write(data + b"\0" * (-len(data) % 512))
    if end:
        buffer.write(b"\0" * 1024)
    return buffer.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _read(data: bytes) -> list[tuple[str, bytes, bytes | None]]:
    """-> [(path, type, content or None)], reading content only for every other file (the rest is skipped)."""
    out = []
    for index, (member, reader) in enumerate(TarStream(io.BytesIO(data), "layer 0").members()):
        content = reader.read() if reader is not None and index % 2 == 0 else None
        out.append((member.path, member.type, content))
    return out


def _with_checksum(header: bytearray) -> bytes:
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def test_files_skipped_and_read_in_turn_keep_the_stream_in_step() -> None:
    big = bytes(range(256)) * 5000  # 1.2 MiB: crosses the reader's 1 MiB reads
    data = _tar([_file("a.txt", b"alpha"), _file("bin/big", big), _file("c.txt", b"gamma"), _file("d", big)])
    assert _read(data) == [("/a.txt", b"0", b"alpha"), ("/bin/big", b"0", None), ("/c.txt", b"0", b"gamma"),
                           ("/d", b"0", None)]  # fmt: skip


def test_gnu_long_names_and_links_and_a_base256_size() -> None:
    long_name = "deep/" + "x" * 150 + "/.env"
    link = tarfile.TarInfo("link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/" + "y" * 200
    data = bytearray(_tar([_file(long_name, b"SECRET=1\n"), (link, None), _file("z", b"zz")]))
    # Rewrite z's size (2) in GNU base-256, as tar does past 8 GiB: the reader must take the same size.
    z_at = data.find(b"z\0\0\0")
    header = bytearray(data[z_at : z_at + 512])
    header[124:136] = b"\x80" + (2).to_bytes(11, "big")
    data[z_at : z_at + 512] = _with_checksum(header)
    assert _read(bytes(data)) == [("/" + long_name, b"0", b"SECRET=1\n"), ("/link", b"2", None), ("/z", b"0", b"zz")]


def test_pax_path_and_a_header_only_type_with_a_size() -> None:
    info, content = _file("p" * 120 + ".txt", b"pax")
    hard = tarfile.TarInfo("hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "a"
    data = bytearray(_tar([(info, content), (hard, None), _file("after", b"after")], fmt=tarfile.PAX_FORMAT))
    # A hard link whose size field is not 0: header-only, as tar and Go read it; the next header follows at once.
    at = data.find(b"hard\0")
    header = bytearray(data[at : at + 512])
    header[124:136] = b"%011o\0" % 512
    data[at : at + 512] = _with_checksum(header)
    assert _read(bytes(data)) == [("/" + "p" * 120 + ".txt", b"0", b"pax"), ("/hard", b"1", None),
                                  ("/after", b"0", b"after")]  # fmt: skip


def test_no_end_blocks_is_accepted_and_damage_is_refused() -> None:
    assert [p for p, _, _ in _read(_tar([_file("a", b"1")], end=False))] == ["/a"]
    damaged = bytearray(_tar([_file("a", b"1"), _file("b", b"2")]))
    damaged[512 + 512 + 10] ^= 0xFF  # b's name: its checksum no longer matches
    with pytest.raises(BadImageError, match="bad header checksum"):
        _read(bytes(damaged))
    with pytest.raises(BadImageError, match="truncated"):
        _read(_tar([_file("a", b"x" * 5000)])[:2048])
    with pytest.raises(BadImageError, match=r"'\.\.'"):
        _read(_tar([_file("../../etc/passwd", b"x")]))
