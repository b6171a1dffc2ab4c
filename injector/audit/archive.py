"""Readers for images on disk: `docker save` archives, OCI archives and OCI layouts.

An archive is indexed in one streaming pass of the Go-compatible tar reader
(members are looked up by name, never extracted, never held whole); a layout
directory through a directory fd, one component at a time with O_NOFOLLOW
(and O_NONBLOCK, so a FIFO cannot hang us), so a symlinked blob cannot make
us read outside it.
Every name a manifest gives is checked to stay inside the archive first.
"""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import os
import posixpath
import stat
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

from injector.audit.errors import BadImageError, NoInputError
from injector.audit.image import (
    MAX_JSON,
    MAX_LAYERS,
    ByteStream,
    Image,
    Layer,
    check_digest,
    parse_json,
    resolve_manifest,
)
from injector.audit.tarstream import TarStream

TAR_ERRORS = (EOFError, zlib.error, OSError, ValueError)  # what the decompressors raise


def safe_member_name(name: str, what: str) -> str:
    """A name inside the archive, normalised; refuse absolute names and `..`."""
    normal = posixpath.normpath(name.removeprefix("./"))
    if name.startswith("/") or normal == ".." or normal.startswith("../"):
        raise BadImageError(f"{what} names {name!r}, outside the archive")
    return normal


MAX_OUTER_MEMBERS = 100_000  # a docker/OCI archive holds a few files per layer and blob
MAX_OUTER_NAMES = 16 * 1024 * 1024  # bytes of member names kept in the index
DUPLICATE = None  # the index's mark for a name that appears twice


@dataclass
class _Entry:
    kind: bytes
    offset: int  # of the content in the (uncompressed) archive
    size: int
    linkname: str


class TarArchive:
    """Random access to the members of a tar (or .tar.gz) image archive, indexed in one streaming pass.

    Read with the same Go-compatible parser as layers (podman and skopeo read
    these archives with Go's archive/tar), never held whole: the index keeps
    each name with its offset, within MAX_OUTER_MEMBERS and MAX_OUTER_NAMES.
    A name that appears twice is refused when asked for: podman loads the
    first `manifest.json`, a dict the last, and the audit must vouch for the
    image that runs.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.raw = _open_regular(path)
        try:
            self.stream = _decompressed(self.raw, path)
            self.members = self._index()
        except BaseException:
            self.raw.close()
            raise

    def _index(self) -> dict[str, _Entry | None]:
        members: dict[str, _Entry | None] = {}
        names = 0
        try:
            for count, (member, _) in enumerate(TarStream(self.stream, self.path).members()):
                if count >= MAX_OUTER_MEMBERS:
                    raise BadImageError(f"{self.path}: more than {MAX_OUTER_MEMBERS} members; not an image archive")
                if member.name.startswith("/"):
                    raise BadImageError(f"{self.path}: a member names {member.name!r}, outside the archive")
                name = member.path.lstrip("/") or "."
                names += len(name) + len(member.linkname)
                if names > MAX_OUTER_NAMES:
                    raise BadImageError(f"{self.path}: its member names exceed {MAX_OUTER_NAMES} bytes")
                if member.type == b"2" and member.linkname.startswith("/"):
                    raise BadImageError(f"{self.path}: member {name!r} is an absolute symlink")
                if member.sparse:
                    raise BadImageError(f"{self.path}: member {name!r} is a sparse file; not an image archive")
                if member.isdir():
                    continue  # never read; a directory named twice is normal
                entry = _Entry(member.type, member.data_offset, member.size, member.linkname)
                members[name] = DUPLICATE if name in members else entry
        except TAR_ERRORS as exc:
            raise BadImageError(f"{self.path}: not a readable tar archive ({_reason(exc)})") from None
        if not members:
            raise BadImageError(f"{self.path}: not a tar archive (no members)")
        return members

    def close(self) -> None:
        self.raw.close()

    def has(self, name: str) -> bool:
        return name in self.members

    def _resolve(self, name: str, what: str) -> _Entry:
        name = safe_member_name(name, what)
        for _ in range(8):
            if name not in self.members:
                raise BadImageError(f"{self.path}: {what} names {name!r}, which the archive does not hold")
            member = self.members[name]
            if member is DUPLICATE:
                raise BadImageError(
                    f"{self.path}: {name!r} appears more than once; refusing an archive whose readers disagree"
                )
            if member.kind == b"2":
                name = safe_member_name(posixpath.join(posixpath.dirname(name), member.linkname), what)
            elif member.kind == b"1":
                name = safe_member_name(member.linkname, what)  # a hard link names a member of the archive
            elif member.kind in (b"0", b"7"):
                return member
            else:
                raise BadImageError(f"{self.path}: {name!r} is not a regular file")
        raise BadImageError(f"{self.path}: too many links at {name!r}")

    def open(self, name: str, what: str) -> IO[bytes]:
        member = self._resolve(name, what)
        return cast("IO[bytes]", _MemberFile(self, member, name))

    def read_small(self, name: str, what: str) -> bytes:
        member = self._resolve(name, what)
        if member.size > MAX_JSON:
            raise BadImageError(f"{self.path}: {what} is implausibly large ({member.size} bytes)")
        data = _MemberFile(self, member, name).read()
        if len(data) != member.size:
            raise BadImageError(f"{self.path}: {what} is truncated")
        return data

    def pread(self, offset: int, count: int) -> bytes:
        try:
            if isinstance(self.stream, _PlainFile):
                return os.pread(self.raw.fileno(), count, offset)
            if self.stream.tell() != offset:
                self.stream.seek(offset)  # forward: decompress on; backward: from the start (layers come in order)
            return self.stream.read(count)
        except TAR_ERRORS as exc:
            raise BadImageError(f"{self.path}: cannot read the archive ({_reason(exc)})") from None


class _MemberFile:
    """One member's content, read where the index says it is."""

    def __init__(self, archive: TarArchive, member: _Entry, name: str) -> None:
        self.archive = archive
        self.position = member.offset
        self.left = member.size
        self.name = name

    def read(self, n: int = -1) -> bytes:
        count = self.left if n is None or n < 0 else min(n, self.left)
        if count <= 0:
            return b""
        data = self.archive.pread(self.position, min(count, 4 * 1024 * 1024))
        if not data:
            raise BadImageError(f"{self.archive.path}: {self.name!r} is truncated")
        self.position += len(data)
        self.left -= len(data)
        return data

    def close(self) -> None:
        pass  # the archive's one handle stays open until the archive is closed


class _PlainFile:
    """An uncompressed archive: read in order, skipped over by seeking, checked against its size."""

    def __init__(self, handle: IO[bytes], path: str) -> None:
        self.handle = handle
        self.path = path
        self.size = os.fstat(handle.fileno()).st_size
        self.position = 0

    def read(self, n: int = -1) -> bytes:
        data = self.handle.read(n)
        self.position += len(data)
        return data

    def skip_forward(self, count: int) -> None:
        if self.position + count > self.size:
            raise BadImageError(f"{self.path}: corrupt tar (truncated member)")
        self.position += count
        self.handle.seek(self.position)


def _open_regular(path: str) -> IO[bytes]:
    """The target opened without blocking on a FIFO, and only if it is a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NoInputError(f"{path}: no such file") from None
    except PermissionError:
        raise NoInputError(f"{path}: not readable") from None
    except OSError as exc:
        raise NoInputError(f"{path}: cannot open ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise NoInputError(f"{path}: a directory, not an archive")
        raise NoInputError(f"{path}: not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb", buffering=1024 * 1024)


def _decompressed(raw: IO[bytes], path: str) -> Any:
    """The archive's tar stream: gzip, bzip2 and xz told by their magic bytes, as `tarfile` did."""
    head = os.pread(raw.fileno(), 6, 0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head[:3] == b"BZh":
        import bz2

        return bz2.BZ2File(raw)
    if head == b"\xfd7zXZ\0":
        import lzma

        return lzma.LZMAFile(raw)
    return _PlainFile(raw, path)


class LayoutDir:
    """An OCI layout directory, read without following any symlink."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NoInputError(f"{path}: no such directory") from None
        except PermissionError:
            raise NoInputError(f"{path}: not readable") from None
        except NotADirectoryError:
            raise NoInputError(f"{path}: not a directory") from None

    def close(self) -> None:
        os.close(self.fd)

    def has(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            return True
        except OSError:
            return False

    def open(self, name: str, what: str) -> IO[bytes]:
        parts = safe_member_name(name, what).split("/")
        fd = os.dup(self.fd)
        try:
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                # O_NONBLOCK: opening a FIFO (no writer) must not block; the fd is checked S_ISREG below
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | (0 if last else os.O_DIRECTORY)
                try:
                    next_fd = os.open(part, flags, dir_fd=fd)
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        raise BadImageError(
                            f"{self.path}: {what} names {name!r}, which the layout does not hold"
                        ) from None
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise BadImageError(f"{self.path}: {name!r} is a symlink; refusing to follow it") from None
                    raise NoInputError(f"{self.path}: cannot read {name!r} ({exc.strerror})") from None
                os.close(fd)
                fd = next_fd
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BadImageError(f"{self.path}: {name!r} is not a regular file")
            os.set_blocking(fd, True)
            handle = os.fdopen(fd, "rb", buffering=1024 * 1024)
            fd = -1
            return handle
        finally:
            if fd >= 0:
                os.close(fd)

    def read_small(self, name: str, what: str) -> bytes:
        with self.open(name, what) as handle:
            data = handle.read(MAX_JSON + 1)
        if len(data) > MAX_JSON:
            raise BadImageError(f"{self.path}: {what} is implausibly large")
        return data


Store = TarArchive | LayoutDir


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:120]


def blob_name(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


def verified_blob(store: Store, digest: str, what: str) -> bytes:
    data = store.read_small(blob_name(digest), what)
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise BadImageError(f"{store.path}: {what} does not match its digest {digest}")
    return data


def read_oci(store: Store, wanted_platform: str, tag: str | None) -> Iterator[Image]:
    """Every image an OCI index.json names (only `tag`'s when given)."""
    if not store.has("oci-layout"):
        raise BadImageError(f"{store.path}: no oci-layout file; not an OCI image layout")
    index = parse_json(store.read_small("index.json", "index.json"), f"{store.path}: index.json")
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise BadImageError(f"{store.path}: index.json lists no manifests")
    if tag is not None:
        manifests = [
            m
            for m in manifests
            if isinstance(m, dict) and (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag
        ]
        if not manifests:
            raise NoInputError(f"{store.path}: no image tagged {tag!r}")

    def fetch(digest: str, what: str) -> bytes:
        return verified_blob(store, check_digest(digest, what), what)

    def opener(digest: str) -> Callable[[], ByteStream]:
        return lambda: store.open(blob_name(digest), f"layer {digest}")

    # Several top-level entries for one platform each (a multi-arch image written entry
    # by entry) are one index; entries with different tags are different images.
    groups: dict[str, list[dict]] = {}
    for descriptor in manifests:
        if not isinstance(descriptor, dict):
            raise BadImageError(f"{store.path}: index.json has a malformed entry")
        name = (descriptor.get("annotations") or {}).get("org.opencontainers.image.ref.name", "")
        groups.setdefault(str(name), []).append(descriptor)
    for name, group in groups.items():
        image = resolve_manifest({"manifests": group}, fetch, opener, wanted_platform, f"{store.path}")
        image.label = name
        yield image


def read_docker_archive(archive: TarArchive) -> Iterator[Image]:
    """Every image a `docker save`/`podman save` manifest.json names."""
    entries = _json_list(archive.read_small("manifest.json", "manifest.json"), archive.path)
    for number, entry in enumerate(entries):
        what = f"manifest.json entry {number}"
        config_name = entry.get("Config")
        layers = entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layers, list):
            raise BadImageError(f"{archive.path}: {what} has no Config or Layers")
        if len(layers) > MAX_LAYERS:
            raise BadImageError(
                f"{archive.path}: {what} has {len(layers)} layers; no engine runs more than {MAX_LAYERS}"
            )
        config_bytes = archive.read_small(config_name, f"{what}'s config")
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        stem = posixpath.basename(config_name).removesuffix(".json")
        if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem) and f"sha256:{stem}" != config_digest:
            raise BadImageError(f"{archive.path}: the config {config_name!r} does not match its digest")
        config = parse_json(config_bytes, f"{archive.path}: the image config")
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") if isinstance(config.get("rootfs"), dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
            raise BadImageError(f"{archive.path}: the config's rootfs.diff_ids do not match manifest.json's Layers")
        result = []
        for index, (name, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
            if not isinstance(name, str):
                raise BadImageError(f"{archive.path}: {what} has a malformed layer name")
            safe_member_name(name, f"{archive.path}: {what}")
            archive._resolve(name, what)  # present and inside, before any reading
            result.append(
                Layer(
                    index=index,
                    name=name,
                    open=functools.partial(archive.open, name, "a layer"),
                    diff_id=check_digest(diff_id, f"{archive.path}: layer {index}"),
                )
            )
        tags = entry.get("RepoTags")
        label = ", ".join(str(t) for t in tags) if isinstance(tags, list) else ""
        yield Image(config=config, config_digest=config_digest, layers=result, label=label)


def _json_list(data: bytes, path: str) -> list[dict]:
    import json

    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadImageError(f"{path}: manifest.json is not valid JSON") from None
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise BadImageError(f"{path}: manifest.json is not a list of images")
    return value


def open_archive(path: str, kind: str | None) -> tuple[TarArchive, str]:
    """-> (archive, "docker" | "oci"), from the explicit kind or what the archive holds."""
    archive = TarArchive(path)
    if kind == "docker-archive" or (kind is None and archive.has("manifest.json")):
        if not archive.has("manifest.json"):
            archive.close()
            raise BadImageError(f"{path}: no manifest.json; not a docker archive")
        return archive, "docker"
    if archive.has("index.json"):
        return archive, "oci"
    archive.close()
    raise BadImageError(f"{path}: neither manifest.json nor index.json; not an image archive")
