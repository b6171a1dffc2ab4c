"""Images in the local engine's store, by name: `containers-storage:NAME`, `docker-daemon:NAME`, or a bare name.

A new user's first try is `audit localhost/shop-api:latest`.  The image is read
from `podman save` (or `docker save`) as it streams out -- no temporary copy
of it is written anywhere.  A docker-archive stream holds its layers first
and manifest.json last, so each layer is scanned as it passes into a
position-free result (layerscan.py), its digest computed on the way; when the
manifest and config arrive, the layers are matched to their diff_ids, and
the image is audited from those results like any other.  Small JSON members
(config, manifest) are kept; nothing else is.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future

from injector.audit.archive import safe_member_name
from injector.audit.errors import BadImageError, NoInputError
from injector.audit.image import MAX_JSON, ByteStream, Image, Layer, check_digest, parse_json
from injector.audit.layerpool import LayerPool
from injector.audit.layerscan import LayerResult, scan_layer
from injector.audit.progress import Progress
from injector.audit.tarstream import Readable, TarStream

PROBE_TIMEOUT = 60  # seconds for `podman image exists` / `docker image inspect`
MAX_KEPT = 64 * 1024 * 1024  # all the small JSON members of one saved archive together
KEEP_UNDER = 1024 * 1024  # a member this small that starts like JSON is kept, not scanned as a layer
STDERR_TAIL = 4096
HEX_NAME = re.compile(r"(?:^|/)([0-9a-f]{64})(?:\.tar)?$")


def engine_images(given: str, name: str, engine: str, pool: LayerPool, progress: Progress) -> Iterator[Image]:
    """The images of `name` in `engine`'s store ("" = podman, then docker); 66 with what was tried if none has it."""
    tried: list[str] = []
    for candidate in (engine,) if engine else ("podman", "docker"):
        executable = shutil.which(candidate)
        if executable is None:
            tried.append(f"{candidate} is not installed")
            continue
        why = _lacks(executable, candidate, name)
        if why:
            tried.append(why)
            continue
        yield from _saved(executable, candidate, name, pool, progress)
        return
    if engine:
        raise NoInputError(f"{given}: {'; '.join(tried)}")
    raise NoInputError(f"{given}: no such file or directory, nor a local image ({'; '.join(tried)})")


def _lacks(executable: str, engine: str, name: str) -> str:
    """'' when the engine has the image, else one short reason."""
    args = ["image", "exists", name] if engine == "podman" else ["image", "inspect", "--format", "{{.Id}}", name]
    try:
        done = subprocess.run(
            [executable, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"{engine} did not answer within {PROBE_TIMEOUT} s"
    except OSError as exc:
        return f"{engine} could not run ({exc.strerror})"
    if done.returncode == 0:
        return ""
    said = _first_line(done.stderr)
    if engine == "podman" and done.returncode == 1:
        return f"podman has no image {name}"
    if "no such" in said.lower():
        return f"{engine} has no image {name}"
    return f"{engine}: {said or f'exit {done.returncode}'}"


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return (text.splitlines() or [""])[-1][:200]  # the engine's last line says what went wrong


class _Pipe:
    """`save`'s stdout as a ByteStream."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.stdout = process.stdout

    def read(self, n: int = -1, /) -> bytes:
        return self.stdout.read(n if n and n > 0 else 1024 * 1024)

    def close(self) -> None:
        pass


class _Member:
    """One member of the saved archive as a layer's raw stream, hashed on the way."""

    def __init__(self, head: bytes, reader: Readable) -> None:
        self.head = head
        self.reader = reader
        self.hash = hashlib.sha256(head)

    def read(self, n: int = -1, /) -> bytes:
        if self.head:
            data, self.head = self.head, b""
            return data
        data = self.reader.read(n if n and n > 0 else 1024 * 1024)
        self.hash.update(data)
        return data

    def close(self) -> None:
        pass

    def itself(self) -> ByteStream:
        return self

    def digest(self) -> str:
        while self.read(4 * 1024 * 1024):  # what the scan left unread still counts
            pass
        return "sha256:" + self.hash.hexdigest()


def _saved(executable: str, engine: str, name: str, pool: LayerPool, progress: Progress) -> Iterator[Image]:
    args = ["save", "--format", "docker-archive", name] if engine == "podman" else ["save", name]
    process = subprocess.Popen(
        [executable, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    tail = bytearray()
    drainer = threading.Thread(target=_drain, args=(process, tail), daemon=True)
    drainer.start()
    what = f"{engine} save {name}"
    try:
        kept, scanned = _read_stream(_Pipe(process), what, pool, progress)
        code = process.wait()
        drainer.join()
        if code != 0:
            raise NoInputError(f"{what} exited {code}: {_first_line(bytes(tail)) or 'no message'}")
        images = list(_images(kept, scanned, what, pool))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    yield from images


def _drain(process: subprocess.Popen[bytes], tail: bytearray) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        tail.extend(line)
        del tail[:-STDERR_TAIL]


Scanned = dict[str, tuple[LayerResult | BadImageError, str | None]]


def _read_stream(
    stream: ByteStream, what: str, pool: LayerPool, progress: Progress
) -> tuple[dict[str, bytes], Scanned]:
    """(small JSON members by name, every other member scanned as a layer: (result or its error, raw digest))."""
    kept: dict[str, bytes] = {}
    kept_bytes = 0
    scanned: Scanned = {}
    number = 0
    for member, reader in TarStream(stream, what).members():
        if reader is None:
            continue  # directories, and the legacy `<id>/layer.tar` symlinks: manifest.json names the files
        name = member.path.lstrip("/")
        head = reader.read(512)
        if member.size <= KEEP_UNDER and head[:1] in (b"{", b"["):
            kept[name] = head + reader.read(member.size)
            kept_bytes += member.size
            if kept_bytes > MAX_KEPT:
                raise BadImageError(f"{what}: implausibly many small members")
            continue
        number += 1
        raw = _Member(head, reader)
        layer = Layer(index=number - 1, name=name, open=raw.itself)
        shown = progress.update if progress.enabled else None
        claimed = HEX_NAME.search(name)
        cached = pool.cache.get("sha256:" + claimed.group(1)) if (pool.cache and claimed) else None
        try:
            result = cached if cached is not None else scan_layer(layer, pool.detector, shown, f"{name[:12]} ")
        except BadImageError as exc:
            scanned[name] = (exc, None)  # an error only if manifest.json names it as a layer
            continue
        digest = raw.digest()
        if cached is not None and claimed and digest != "sha256:" + claimed.group(1):
            raise BadImageError(f"{what}: {name} does not match the digest it is named by")
        scanned[name] = (result, digest)
    return kept, scanned


def _images(kept: dict[str, bytes], scanned: Scanned, what: str, pool: LayerPool) -> Iterator[Image]:
    """manifest.json's images, their layers matched to the results already made."""
    import json

    if "manifest.json" not in kept:
        raise BadImageError(f"{what}: no manifest.json; not a docker archive")
    try:
        entries = json.loads(kept["manifest.json"])
    except (ValueError, UnicodeDecodeError):
        raise BadImageError(f"{what}: manifest.json is not valid JSON") from None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise BadImageError(f"{what}: manifest.json is not a list of images")
    for entry in entries:
        config_name, names = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(names, list):
            raise BadImageError(f"{what}: a manifest.json entry has no Config or Layers")
        config_bytes = kept.get(safe_member_name(config_name, what))
        if config_bytes is None or len(config_bytes) > MAX_JSON:
            raise BadImageError(f"{what}: the config {config_name!r} is missing")
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        claimed = HEX_NAME.search(config_name.removesuffix(".json"))
        if claimed and "sha256:" + claimed.group(1) != config_digest:
            raise BadImageError(f"{what}: the config {config_name!r} does not match its digest")
        config = parse_json(config_bytes, f"{what}: the image config")
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(names):
            raise BadImageError(f"{what}: the config's rootfs.diff_ids do not match manifest.json's Layers")
        layers = []
        for index, (name, diff_id) in enumerate(zip(names, diff_ids, strict=True)):
            if not isinstance(name, str):
                raise BadImageError(f"{what}: a malformed layer name")
            diff_id = check_digest(diff_id, f"{what}: layer {index}")
            if diff_id not in pool.futures:
                result = _result_for(safe_member_name(name, what), diff_id, kept, scanned, what, pool)
                done: Future[LayerResult] = Future()
                done.set_result(result)
                pool.futures[diff_id] = done
            layers.append(Layer(index=index, name=name, open=_never, diff_id=diff_id))
        tags = entry.get("RepoTags")
        label = ", ".join(str(t) for t in tags) if isinstance(tags, list) else ""
        yield Image(config=config, config_digest=config_digest, layers=layers, label=label)


def _result_for(
    name: str, diff_id: str, kept: dict[str, bytes], scanned: Scanned, what: str, pool: LayerPool
) -> LayerResult:
    if name not in scanned and name in kept:  # a tiny layer that looked like JSON: scan it now
        data = kept[name]
        layer = Layer(index=0, name=name, open=lambda: _Bytes(data))
        try:
            scanned[name] = (scan_layer(layer, pool.detector), "sha256:" + hashlib.sha256(data).hexdigest())
        except BadImageError as exc:
            scanned[name] = (exc, None)
    if name not in scanned:
        raise BadImageError(f"{what}: manifest.json names the layer {name!r}, which the archive does not hold")
    result, digest = scanned[name]
    if isinstance(result, BadImageError):
        raise result
    claimed = HEX_NAME.search(name)
    if digest != diff_id and not (claimed and digest == "sha256:" + claimed.group(1)):
        raise BadImageError(f"{what}: layer {name!r} does not match its diff_id {diff_id}")
    if not result.from_cache and pool.cache is not None and digest is not None:
        pool.cache.put(digest, result)
    with pool.lock:
        pool.bytes_read += result.raw_bytes
        pool.scanned += 0 if result.from_cache else 1
        pool.from_cache += 1 if result.from_cache else 0
    return result


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)

    def read(self, n: int = -1, /) -> bytes:
        count = len(self.data) if n is None or n < 0 else n
        chunk, self.data = bytes(self.data[:count]), self.data[count:]
        return chunk

    def close(self) -> None:
        pass


def _never() -> ByteStream:
    raise BadImageError("a saved layer was read twice")  # every layer's result is made as the stream passes
