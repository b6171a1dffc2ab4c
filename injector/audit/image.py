"""One image as every reader yields it: a config, and layers that open as byte streams.

The readers (archive.py for docker/OCI archives and layouts, registry.py for a
registry) differ only in where bytes come from; `resolve_manifest` turns an
OCI or Docker manifest (or an index of them, picking `--platform`) into an
`Image`, whatever the transport.  Nothing here reads a layer's content.
"""

from __future__ import annotations

import json
import platform as _platform
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from injector.audit.errors import BadImageError

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_JSON = 8 * 1024 * 1024  # a manifest, index or config is a few KiB; refuse to buffer more
MAX_LAYERS = 256  # docker stops at 125, overlayfs near 500 lower dirs with podman's short names: generous
MAX_IMAGES = 1024  # images one target (an archive, an index) may hold

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
MANIFEST_ACCEPT = ", ".join(sorted(INDEX_TYPES | MANIFEST_TYPES))


class ByteStream(Protocol):
    """What a layer opens as: an archive member, a layout file, a registry response."""

    def read(self, n: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


@dataclass
class Layer:
    index: int
    name: str  # a digest or the archive member, for messages
    open: Callable[[], ByteStream]  # the blob's raw bytes, as stored (maybe compressed)
    blob_digest: str | None = None  # checked over the raw bytes
    diff_id: str | None = None  # checked over the uncompressed tar
    size: int | None = None  # the raw size the manifest promises
    media_type: str = ""


@dataclass
class Image:
    config: dict
    config_digest: str
    layers: list[Layer]
    label: str = ""  # e.g. the tag or platform when a target holds several images
    history: list[dict] = field(default_factory=list)
    parallel: bool = False  # its layers can be read at once (a registry, a layout dir; not one tar file)

    def __post_init__(self) -> None:
        history = self.config.get("history")
        self.history = [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


def parse_json(data: bytes, what: str) -> dict:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested too deep
        raise BadImageError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadImageError(f"{what} is not a JSON object")
    return value


def check_digest(digest: object, what: str) -> str:
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise BadImageError(f"{what} has no valid sha256 digest")
    return digest


def machine_platform() -> str:
    machine = _platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm"}.get(
        machine, machine
    )
    return f"linux/{arch}"


def _platform_of(descriptor: dict) -> str:
    plat = descriptor.get("platform")
    if not isinstance(plat, dict):
        return ""
    text = f"{plat.get('os', '')}/{plat.get('architecture', '')}"
    return f"{text}/{plat['variant']}" if plat.get("variant") else text


def choose_platform(manifests: list[dict], wanted: str, what: str) -> dict:
    """The manifest for `wanted` (os/arch[/variant]); a lone manifest without a platform is taken as is."""
    candidates = [m for m in manifests if isinstance(m, dict)]
    if len(candidates) == 1 and not _platform_of(candidates[0]):
        return candidates[0]
    for descriptor in candidates:
        found = _platform_of(descriptor)
        if found == wanted or (found.rsplit("/", 1)[0] == wanted and found.count("/") == 2):
            return descriptor
    offered = ", ".join(sorted({_platform_of(m) or "?" for m in candidates})) or "none"
    raise BadImageError(f"{what} has no image for platform {wanted} (it has: {offered}); choose one with --platform")


def resolve_manifest(
    descriptor_or_manifest: dict,
    fetch_blob: Callable[[str, str], bytes],
    open_layer: Callable[[str], Callable[[], ByteStream]],
    wanted_platform: str,
    what: str,
    depth: int = 0,
) -> Image:
    """An OCI/Docker manifest or index (already parsed) -> Image.

    `fetch_blob(digest, what)` returns a verified small blob (manifest, config);
    `open_layer(digest)` returns an opener of a layer's raw bytes.
    """
    if depth > 4:
        raise BadImageError(f"{what}: indexes nest too deep")
    manifest = descriptor_or_manifest
    media_type = str(manifest.get("mediaType", ""))
    if "manifests" in manifest or media_type in INDEX_TYPES:
        manifests = manifest.get("manifests")
        if not isinstance(manifests, list) or not manifests:
            raise BadImageError(f"{what}: an index without manifests")
        chosen = choose_platform(manifests, wanted_platform, what)
        digest = check_digest(chosen.get("digest"), f"{what}: a manifest entry")
        inner = parse_json(fetch_blob(digest, f"manifest {digest}"), f"manifest {digest}")
        return resolve_manifest(inner, fetch_blob, open_layer, wanted_platform, what, depth + 1)
    if manifest.get("schemaVersion") == 1:
        raise BadImageError(f"{what}: Docker schema 1 manifests are not supported")
    config_descriptor = manifest.get("config")
    layers = manifest.get("layers")
    if not isinstance(config_descriptor, dict) or not isinstance(layers, list):
        raise BadImageError(f"{what}: a manifest without config or layers")
    if len(layers) > MAX_LAYERS:
        raise BadImageError(f"{what}: {len(layers)} layers; no engine runs more than {MAX_LAYERS}")
    config_digest = check_digest(config_descriptor.get("digest"), f"{what}: the config")
    config = parse_json(fetch_blob(config_digest, "the image config"), "the image config")
    result: list[Layer] = []
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise BadImageError(f"{what}: layer {index} is not a descriptor")
        digest = check_digest(layer.get("digest"), f"{what}: layer {index}")
        size = layer.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            # required by the OCI and Docker specs, and what bounds the download
            raise BadImageError(f"{what}: layer {index} has no valid size")
        result.append(
            Layer(
                index=index,
                name=digest,
                open=open_layer(digest),
                blob_digest=digest,
                size=size,
                media_type=str(layer.get("mediaType", "")),
            )
        )
    return Image(config=config, config_digest=config_digest, layers=result)


def history_per_layer(image: Image) -> tuple[list[tuple[int | None, dict]], dict[int, str]]:
    """Each history entry with the layer it made (None for an empty layer), and each layer's line."""
    entries: list[tuple[int | None, dict]] = []
    lines: dict[int, str] = {}
    layer = 0
    for entry in image.history:
        if entry.get("empty_layer"):
            entries.append((None, entry))
            continue
        entries.append((layer, entry))
        lines[layer] = str(entry.get("created_by", ""))
        layer += 1
    return entries, lines


def iter_images(images: Iterator[Image] | list[Image]) -> Iterator[Image]:
    yield from images
