"""One layer's result, independent of where the layer sits in an image.

Images share layers, so a layer is scanned once (per run, and with `--cache`
once ever) and its result reused by every image that holds it, at whatever
index.  A result therefore holds nothing that depends on the other layers:
its file findings (with no layer index), and what it deletes or replaces, as
hashes of paths, so that an image can later decide which findings of its
earlier layers a later layer deleted (`deleted-file`) without reading
either layer again.

Paths are kept as 8-byte truncated SHA-256 hashes: a base layer has 100k
files, and a collision could only turn a `file` finding into a
`deleted-file` one (still reported), never hide it.
"""

from __future__ import annotations

import bisect
import hashlib
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from injector.audit.detect import Detector, is_known_credential_file
from injector.audit.findings import Finding
from injector.audit.image import Layer
from injector.audit.layers import OPAQUE, WHITEOUT, Budget, open_layer_stream, read_windows, walk, worth_reading

TEXT_BATCH = 4 * 1024 * 1024  # text windows are searched for triggers this much at a time
Progress = Callable[[str], None]


def path_hash(path: str) -> bytes:
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).digest()[:8]


@dataclass
class LayerResult:
    findings: list[Finding]  # where="file", layer=None: the image sets the index
    covers: bytes  # sorted 8-byte hashes: non-directory members and whiteout targets (delete path and below)
    opaque: bytes  # sorted 8-byte hashes: directories made opaque (delete what is below)
    raw_bytes: int = 0  # bytes read to scan it (0 when it came from the cache)
    from_cache: bool = False

    def _has(self, blob: bytes, path: str) -> bool:
        key = path_hash(path)
        count = len(blob) // 8
        low = bisect.bisect_left(_Hashes(blob), key, 0, count)
        return low < count and blob[low * 8 : low * 8 + 8] == key

    def deletes(self, path: str) -> bool:
        """Whether this layer, put above another, deletes or replaces `path` of it."""
        if self._has(self.covers, path):
            return True
        parent = posixpath.dirname(path)
        while True:
            if self._has(self.covers, parent) or self._has(self.opaque, parent):
                return True
            if parent in ("/", ""):
                return False
            parent = posixpath.dirname(parent)


class _Hashes:
    """A sorted blob of 8-byte keys as a sequence, for bisect (no list of 100k bytes objects)."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __len__(self) -> int:
        return len(self.blob) // 8

    def __getitem__(self, index: int) -> bytes:
        return self.blob[index * 8 : index * 8 + 8]


def pack(hashes: Iterable[bytes]) -> bytes:
    return b"".join(sorted(set(hashes)))


def scan_layer(
    layer: Layer, detector: Detector, progress: Progress | None = None, label: str = "", budget: Budget | None = None
) -> LayerResult:
    """Download (or read) one layer, check its digests, scan its files: raises BadImageError on any mismatch."""
    what = f"layer {layer.index} ({layer.name})"
    findings: list[Finding] = []
    covers: list[bytes] = []
    opaque: list[bytes] = []
    batch: list[tuple[str, bytes]] = []
    batched = 0
    stream, close = open_layer_stream(layer, what, budget)
    try:
        for member, content in walk(stream, what):
            directory, name = posixpath.split(member.path)
            if name == OPAQUE:
                opaque.append(path_hash(directory))
            elif name.startswith(WHITEOUT):
                covers.append(path_hash(posixpath.join(directory, name[len(WHITEOUT) :])))
            elif not member.isdir():
                covers.append(path_hash(member.path))
            if content is None or not worth_reading(member.path):
                continue
            if progress is not None:
                progress(f"{label}{member.path[:60]}")
            # A known credential file is read whatever it holds: a NUL (or a sparse hole) after the
            # secret does not stop an app reading it, so it must not stop the audit.
            for window in read_windows(content, what, always=is_known_credential_file(member.path)):
                batch.append((member.path, window))
                batched += len(window)
                if batched >= TEXT_BATCH:
                    _scan_batch(batch, detector, findings)
                    batched = 0
        _scan_batch(batch, detector, findings)
        stream.drain()  # the digest checks: a result is only ever made from verified bytes
    finally:
        close()
    return LayerResult(_unique(findings), pack(covers), pack(opaque), raw_bytes=stream.raw.count)


def _scan_batch(batch: list[tuple[str, bytes]], detector: Detector, findings: list[Finding]) -> None:
    for (path, _), hits in zip(batch, detector.scan_texts(batch), strict=True):
        for rule, key, value in hits:
            findings.append(Finding.of(value, where="file", rule=rule, key=key, path=path))
    batch.clear()


def _unique(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[object, ...]] = set()
    out = []
    for finding in findings:
        identity = (finding.path, finding.key, finding.fingerprint)
        if identity not in seen:
            seen.add(identity)
            out.append(finding)
    return out


def image_findings(results: list[LayerResult]) -> list[Finding]:
    """The file findings of an image whose layers, bottom up, gave `results`."""
    out: list[Finding] = []
    for index, result in enumerate(results):
        for finding in result.findings:
            assert finding.path is not None
            deleted_by = next(
                (later for later in range(index + 1, len(results)) if results[later].deletes(finding.path)), None
            )
            if deleted_by is None:
                out.append(finding.moved(layer=index))
            else:
                fix = (
                    f"layer {deleted_by} deletes or replaces it, but layer {index} still holds it whole: "
                    "rebuild without it (--mount=type=secret) and rotate it"
                )
                out.append(finding.moved(layer=index, where="deleted-file", fix=fix))
    return out
