"""Readers for images on disk: `docker save` archives, OCI archives and OCI layouts.

An archive is read in place through `tarfile` (members are looked up by name,
never extracted); a layout directory through a directory fd, one component at
a time with O_NOFOLLOW, so a symlinked blob cannot make us read outside it.
Every name a manifest gives is checked to stay inside the archive first.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import posixpath
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO

from injector.audit.errors import BadImageError, NoInputError
from injector.audit.image import (
    MAX_JSON,
    ByteStream,
    Image,
    Layer,
    check_digest,
    parse_json,
    resolve_manifest,
)

TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError)


def safe_member_name(name: str, what: str) -> str:
    """A name inside the archive, normalised; refuse absolute names and `..`."""
    normal = posixpath.normpath(name.removeprefix("./"))
    if name.startswith("/") or normal == ".." or normal.startswith("../"):
        raise BadImageError(f"{what} names {name!r}, outside the archive")
    return normal


class TarArchive:
    """Random access to the members of a tar (or .tar.gz) image archive."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by close()
            members = self.tar.getmembers()
        except FileNotFoundError:
            raise NoInputError(f"{path}: no such file") from None
        except PermissionError:
            raise NoInputError(f"{path}: not readable") from None
        except IsADirectoryError:
            raise NoInputError(f"{path}: a directory, not an archive") from None
        except TAR_ERRORS as exc:
            raise BadImageError(f"{path}: not a readable tar archive ({_reason(exc)})") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        for member in members:
            name = safe_member_name(member.name, f"{path}: a member")
            if member.issym() and member.linkname.startswith("/"):
                raise BadImageError(f"{path}: member {name!r} is an absolute symlink")
            self.members[name] = member

    def close(self) -> None:
        self.tar.close()

    def has(self, name: str) -> bool:
        return name in self.members

    def _resolve(self, name: str, what: str) -> tarfile.TarInfo:
        name = safe_member_name(name, what)
        for _ in range(8):
            member = self.members.get(name)
            if member is None:
                raise BadImageError(f"{self.path}: {what} names {name!r}, which the archive does not hold")
            if not member.issym():
                if not (member.isfile() or member.islnk()):
                    raise BadImageError(f"{self.path}: {name!r} is not a regular file")
                return member
            name = safe_member_name(posixpath.join(posixpath.dirname(name), member.linkname), what)
        raise BadImageError(f"{self.path}: too many symlinks at {name!r}")

    def open(self, name: str, what: str) -> IO[bytes]:
        member = self._resolve(name, what)
        try:
            stream = self.tar.extractfile(member)
        except TAR_ERRORS as exc:
            raise BadImageError(f"{self.path}: cannot read {name!r} ({_reason(exc)})") from None
        if stream is None:
            raise BadImageError(f"{self.path}: {name!r} is not a regular file")
        return stream

    def read_small(self, name: str, what: str) -> bytes:
        member = self._resolve(name, what)
        if member.size > MAX_JSON:
            raise BadImageError(f"{self.path}: {what} is implausibly large ({member.size} bytes)")
        try:
            data = self.open(name, what).read()
        except TAR_ERRORS as exc:
            raise BadImageError(f"{self.path}: cannot read {what} ({_reason(exc)})") from None
        if len(data) != member.size:
            raise BadImageError(f"{self.path}: {what} is truncated")
        return data


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
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if last else os.O_DIRECTORY)
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
    except (ValueError, UnicodeDecodeError):
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
