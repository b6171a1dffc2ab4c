"""The audit's layer reader against Go's archive/tar, the reader every engine extracts layers with.

tests/compat/gotar is a small Go program (standard library only, built here
with Debian's golang-go into a temporary directory, offline) that lists each
member as archive/tar reads it: name, type flag, and the sha256 of the content
`Read` returns.  The audit's TarStream must read the same members with the
same content, over hand-made hostile tars and hypothesis-generated ones: where
they differ, an image could show the engines a file the audit never read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from injector.audit.errors import BadImageError
from injector.audit.tarstream import REGULAR_TYPES, TarStream, normalise
from testkit.hostile_tar import END, gnu_long, header, member, octal, old_gnu_sparse, pad, pax, pax_record

GOTAR = Path(__file__).parent / "compat" / "gotar"
SECRET = b"GITHUB_TOKEN=ghp_" + b"R4nd0mT0k3nV4lu3F0rT3st1ngXyZ123456a" + b"\n"

Listing = list[tuple[str, bytes, str | None]]  # (normalised path, type, sha256 of the content or None)


@pytest.fixture(scope="module")
def gotar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lister, built offline with the standard library only (.ci/run installs golang-go)."""
    go = shutil.which("go")
    assert go, "Go is needed (Debian golang-go; .ci/run installs it)"
    work = tmp_path_factory.mktemp("gotar")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(work),
        "GOCACHE": str(work / "cache"),
        "GOPATH": str(work / "gopath"),
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    binary = work / "gotar"
    result = subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=GOTAR, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return binary


def go_list(gotar: Path, data: bytes) -> tuple[Listing, bool]:
    """-> (members as Go reads them, whether Go read the whole tar without an error)."""
    result = subprocess.run([str(gotar)], input=data, capture_output=True, timeout=120)
    lines = result.stdout.decode().splitlines()
    ok = bool(lines) and lines[-1] == "OK"
    assert ok == (result.returncode == 0) and (ok or lines[-1].startswith("ERROR")), result
    listing: Listing = []
    for line in lines[:-1]:
        name_hex, type_hex, _size, digest = line.split(" ")
        kind = bytes.fromhex(type_hex)
        listing.append((bytes.fromhex(name_hex).decode("utf-8", "surrogateescape"), kind, digest))
    return listing, ok


def audit_list(data: bytes) -> tuple[Listing, bool]:
    """-> (members as the audit reads them, whether it read the whole tar); only BadImageError may escape."""
    import io

    listing: Listing = []
    try:
        for found, reader in TarStream(io.BytesIO(data), "layer 0").members():
            content = reader.read() if reader is not None else b""
            listing.append((found.path, found.type, hashlib.sha256(content).hexdigest()))
    except BadImageError:
        return listing, False
    return listing, True


def assert_same(gotar: Path, data: bytes) -> Listing:
    go, go_ok = go_list(gotar, data)
    ours, our_ok = audit_list(data)
    if go_ok and not our_ok and any(".." in name.split("/") for name, _, _ in go):
        return ours  # a member climbing out with '..': the audit refuses the layer (the engines refuse it too)
    assert our_ok == go_ok, (go, ours, go_ok)
    if not go_ok:
        return ours  # Go refuses the tar: no engine extracts it, so there is no content to agree on
    expected = []
    for name, kind, digest in go:
        expected.append((normalise(name, "go"), kind, digest if kind in REGULAR_TYPES else None))
    got = [(name, kind, digest if kind in REGULAR_TYPES else None) for name, kind, digest in ours]
    assert got == expected
    return ours


def _file(name: str, data: bytes) -> bytes:
    return member(name.encode(), data)


def _secret_listed(listing: Listing, path: str) -> bool:
    return (path, b"0", hashlib.sha256(SECRET).hexdigest()) in listing


# -- the forms the attack used ----------------------------------------------------------------------


def test_a_made_up_gnu_sparse_key_in_a_global_header_hides_nothing(gotar: Path) -> None:
    data = pax([(b"GNU.sparse.hide", b"1")], kind=b"g") + _file("app/.env", SECRET) + END
    assert _secret_listed(assert_same(gotar, data), "/app/.env")


def test_a_made_up_gnu_sparse_key_for_one_member_is_not_sparse(gotar: Path) -> None:
    data = pax([(b"GNU.sparse.hide", b"1")]) + _file("app/.env", SECRET) + END
    assert _secret_listed(assert_same(gotar, data), "/app/.env")


def test_a_global_path_is_never_applied(gotar: Path) -> None:
    data = pax([(b"path", b"usr/share/locale/x.mo")], kind=b"g") + _file("app/.env", SECRET) + END
    assert _secret_listed(assert_same(gotar, data), "/app/.env")


def test_a_gnu_long_name_beats_a_pax_path(gotar: Path) -> None:
    for first, second in ((pax([(b"path", b"usr/share/locale/x.mo")]), gnu_long(b"L", b"app/.env")),) * 2:
        data = first + second + _file("short", SECRET) + END
        assert _secret_listed(assert_same(gotar, data), "/app/.env")
        first, second = second, first  # the long name wins whichever comes first
        data = first + second + _file("short", SECRET) + END
        assert _secret_listed(assert_same(gotar, data), "/app/.env")


def test_a_second_pax_header_replaces_the_first(gotar: Path) -> None:
    data = pax([(b"path", b"app/.env")]) + pax([(b"uid", b"0")]) + _file("plain", SECRET) + END
    assert _secret_listed(assert_same(gotar, data), "/plain")


def test_a_global_header_drops_what_came_before_it(gotar: Path) -> None:
    data = pax([(b"path", b"usr/share/locale/x.mo")]) + pax([], kind=b"g") + _file("app/.env", SECRET) + END
    assert _secret_listed(assert_same(gotar, data), "/app/.env")


def test_ustar_magic_without_its_version_still_has_a_prefix(gotar: Path) -> None:
    data = member(b".env", SECRET, magic=b"ustar\0\0\0", prefix=b"app") + END
    assert _secret_listed(assert_same(gotar, data), "/app/.env")


def test_numbers_with_leading_nuls_are_read_as_go_reads_them(gotar: Path) -> None:
    size = b"\0\0" + b"%o" % len(SECRET) + b"\0"
    data = header(b"app/.env", size=size) + pad(SECRET) + END
    assert _secret_listed(assert_same(gotar, data), "/app/.env")


@pytest.mark.parametrize(
    "size",
    [b"-1000\0", b"\xff" * 11 + b"\xfa", b"1e3\0", b"0o17\0", b"1_0\0", b" +12\0"],
    ids=["octal-negative", "base256-negative", "not-octal", "python-prefix", "underscore", "sign"],
)
def test_sizes_go_refuses_are_refused(gotar: Path, size: bytes) -> None:
    data = header(b"app/.env", size=size) + pad(SECRET) + END
    assert not go_list(gotar, data)[1]
    assert_same(gotar, data)


def test_a_negative_pax_size_is_refused(gotar: Path) -> None:
    data = pax([(b"size", b"-1536")]) + _file("app/.env", SECRET) + END
    assert not go_list(gotar, data)[1]
    assert_same(gotar, data)


def test_a_base256_size_is_read(gotar: Path) -> None:
    size = b"\x80" + len(SECRET).to_bytes(11, "big")
    data = header(b"app/.env", size=size) + pad(SECRET) + END
    assert _secret_listed(assert_same(gotar, data), "/app/.env")


def test_old_gnu_sparse_content_is_read_with_its_holes(gotar: Path) -> None:
    data = old_gnu_sparse(b"app/.env", [(0, len(SECRET)), (4096, 5)], 4096 + 5, SECRET + b"TAIL\n") + END
    listing = assert_same(gotar, data)
    assert listing[0][:2] == ("/app/.env", b"S")


def test_pax_sparse_formats_are_read_with_their_holes(gotar: Path) -> None:
    tail = b"PASSWORD=s3cr3tV4lu3Xy\n"
    v01 = [
        (b"GNU.sparse.major", b"0"),
        (b"GNU.sparse.minor", b"1"),
        (b"GNU.sparse.name", b"app/.env"),
        (b"GNU.sparse.realsize", b"%d" % (len(SECRET) + 1000 + len(tail))),
        (b"GNU.sparse.numblocks", b"2"),
        (b"GNU.sparse.map", b"0,%d,%d,%d" % (len(SECRET), len(SECRET) + 1000, len(tail))),
    ]
    data = pax(v01) + _file("GNUSparseFile.0/env", SECRET + tail) + END
    listing = assert_same(gotar, data)
    assert listing[0][0] == "/app/.env"
    map_1_0 = pad(b"1\n0\n%d\n" % len(SECRET))
    v10 = [(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0"), (b"GNU.sparse.name", b"app/.env")]
    v10.append((b"GNU.sparse.realsize", b"%d" % (len(SECRET) + 10)))
    data = pax(v10) + _file("GNUSparseFile.0/env", map_1_0 + SECRET) + END
    assert assert_same(gotar, data)[0][0] == "/app/.env"
    v00 = [(b"GNU.sparse.size", b"%d" % len(SECRET)), (b"GNU.sparse.numblocks", b"1")]
    v00 += [(b"GNU.sparse.offset", b"0"), (b"GNU.sparse.numbytes", b"%d" % len(SECRET))]
    data = pax(v00) + _file("app/.env", SECRET) + END
    assert _secret_listed(assert_same(gotar, data), "/app/.env")


def test_sparse_files_gnu_tar_writes(gotar: Path, tmp_path: Path) -> None:
    """Real sparse files from GNU tar, in every sparse format it writes."""
    tar = shutil.which("tar")
    assert tar
    source = tmp_path / "src"
    source.mkdir()
    with open(source / "app.env", "wb") as handle:
        handle.write(SECRET)
        handle.seek(256 * 1024)
        handle.write(SECRET)
    for fmt, version in (("gnu", None), ("posix", "0.0"), ("posix", "0.1"), ("posix", "1.0")):
        out = tmp_path / f"{fmt}-{version}.tar"
        args = [tar, "--sparse", f"--format={fmt}", "-cf", str(out), "-C", str(source), "app.env"]
        if version:
            args.insert(2, f"--sparse-version={version}")
        subprocess.run(args, check=True, timeout=60)
        listing = assert_same(gotar, out.read_bytes())
        assert listing and listing[-1][0] == "/app.env", (fmt, version, listing)


def test_zero_block_then_a_header(gotar: Path) -> None:
    data = _file("a", b"x") + b"\0" * 512 + _file("app/.env", SECRET) + END
    assert_same(gotar, data)


def test_tarfile_formats_agree(gotar: Path) -> None:
    import io

    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
            long = "a/" * 60 + ".env" if fmt != tarfile.USTAR_FORMAT else "a/" * 40 + ".env"  # ustar: a prefix
            for name in (long, "ünï/cödé.env", "plain"):
                info = tarfile.TarInfo(name)
                info.size = len(SECRET)
                tar.addfile(info, io.BytesIO(SECRET))
            link = tarfile.TarInfo("link")
            link.type = tarfile.SYMTYPE
            link.linkname = "x" * (200 if fmt != tarfile.USTAR_FORMAT else 99)
            tar.addfile(link)
        assert len(assert_same(gotar, buffer.getvalue())) == 4


# -- generated ----------------------------------------------------------------------------------------

NAMES = st.sampled_from(
    [b"app/.env", b"./app/.env", b"app//.env", b"usr/share/locale/x.mo", b"dir/", b"a", b"b/c", b"x" * 99,
     b"../up", b"", b"GNUSparseFile.0/f"]
)  # fmt: skip
NUMBERS = st.one_of(
    st.integers(-3, 3000).map(lambda n: b"%d" % n),
    st.sampled_from([b"", b"+5", b"-0", b"1_0", b" 7", b"0x10", b"9" * 30]),
)
PAX_KEYS = st.sampled_from(
    [b"path", b"linkpath", b"size", b"uid", b"gid", b"mtime", b"uname", b"comment", b"GNU.sparse.hide",
     b"GNU.sparse.major", b"GNU.sparse.minor", b"GNU.sparse.name", b"GNU.sparse.map", b"GNU.sparse.numblocks",
     b"GNU.sparse.size", b"GNU.sparse.realsize", b"GNU.sparse.offset", b"GNU.sparse.numbytes", b"SCHILY.xattr.a"]
)  # fmt: skip
PAX_VALUES = st.one_of(
    NAMES,
    st.integers(0, 3000).map(lambda n: b"%d" % n),
    st.integers(0, 30).map(lambda n: b"%d" % n),
    NUMBERS,
    st.sampled_from([b"0,5", b"0,5,10,3", b"1.5", b"0.a", b"a\0b", b"1", b"0"]),
)
CONTENT = st.one_of(st.sampled_from([b"", SECRET, SECRET * 3]), st.binary(max_size=700))
KINDS = st.sampled_from([b"0", b"0", b"0", b"\0", b"1", b"2", b"5", b"7", b"S", b"A", b"3", b"6"])
MAGICS = st.sampled_from([b"ustar\x0000", b"ustar\x0000", b"ustar  \0", b"ustar\0\0\0", b"\0" * 8])


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """One record: a plain member, a pax header (x or g), a GNU long name/link, an old GNU sparse member."""
    choice = draw(st.integers(0, 19))
    if choice <= 9:
        content = draw(CONTENT)
        size: int | bytes = len(content)
        if draw(st.booleans()) and draw(st.booleans()):
            forms = [b"\0\0" + b"%o" % len(content), b"%o " % len(content), b"\x80" + len(content).to_bytes(11, "big")]
            size = draw(st.sampled_from(forms))
        prefix = draw(st.sampled_from([b"", b"", b"app", b"\xff"]))
        return header(draw(NAMES), draw(KINDS), size, magic=draw(MAGICS), prefix=prefix) + pad(content)
    if choice <= 13:
        pairs = draw(st.lists(st.tuples(PAX_KEYS, PAX_VALUES), max_size=6))
        data = b"".join(pax_record(k, v) for k, v in pairs)
        if draw(st.integers(0, 19)) == 0:
            data += b"junk"
        return member(b"PaxHeaders/x", data, draw(st.sampled_from([b"x", b"x", b"g"])))
    if choice <= 15:
        return gnu_long(draw(st.sampled_from([b"L", b"K"])), draw(NAMES))
    if choice <= 18:
        content = draw(CONTENT)
        fragments = draw(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 700)), max_size=4))
        real = draw(st.integers(0, 3000))
        return old_gnu_sparse(draw(NAMES), fragments, real, content)
    return header(draw(NAMES), b"0", octal(3, 12), fields={148: b"0000000\0"}, checksum=False)  # a bad checksum


@st.composite
def tars(draw: st.DrawFn) -> bytes:
    body = b"".join(draw(st.lists(records(), min_size=1, max_size=6)))
    return body + draw(st.sampled_from([END, b"", b"\0" * 512, END + b"trailing"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=tars())
def test_generated_tars_read_as_go_reads_them(gotar: Path, data: bytes) -> None:
    assert_same(gotar, data)
