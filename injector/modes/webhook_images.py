"""What the webhook reads from registries: an image's ENTRYPOINT/CMD, and its audit (SPEC 10, 14).

Everything is looked up by manifest digest and cached by digest, never by tag
(a tag moves; a digest names one image for ever).  A tag is resolved to its
digest at each review (one HEAD), so a re-pushed tag is seen at once.  The
audit's registry client (injector/audit/registry.py) does the reading; it and
`requests` are imported here, by this mode only.

Each review waits at most `budget` seconds for all of it: the API server's own
timeout is at most 10 s and every pod creation in the cluster waits on us.  A
lookup that is still running then goes on in the background (a small pool,
one task per image at a time) and its result serves the next review.  A
registry that never answers holds a lookup for minutes (the client's own
timeouts and retries), so each registry may hold PER_REGISTRY of the pool's
threads at most; past that its lookups fail at once, and other registries'
lookups still find a free thread.  Audits run side by side: the detector is
built once, before any thread shares it, as the audit's own layer pool does.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from typing import Any

from injector.errors import StrongholdError
from injector.modes.pod_mutation import ImageCommand

CACHE_ENTRIES = 2048  # digests; an entry is a few hundred bytes
WORKERS = 8
PER_REGISTRY = 2  # of the WORKERS, what one registry may hold (a slow or hostile one starves no other)
MAX_PENDING = 256  # lookups queued or running: past this a review does not wait for a new one (pods name any image)
MAX_REASON = 160  # of a registry's error, in a refusal or warning (the API server may cut warnings at 256)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageRef:
    host: str  # the registry's address as the client dials it
    repo: str
    reference: str  # a tag or a digest


def parse_image(image: str) -> ImageRef:
    """A pod's `image` as the kubelet reads it (docker.io and library/ implied)."""
    name, _, digest = image.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "docker.io", name
    last = path.rsplit("/", 1)[-1]
    tag = "latest"
    if ":" in last:
        path, _, tag = path.rpartition(":")
    if host == "docker.io":
        host = "registry-1.docker.io"
        if "/" not in path:
            path = "library/" + path
    if digest and not DIGEST.match(digest):
        raise ValueError(f"image {image}: {digest!r} is not a sha256 digest")
    if not path or not re.fullmatch(r"[a-z0-9]+(?:[._/-][a-z0-9]+|__)*", path):
        raise ValueError(f"image {image}: not a valid repository name")
    return ImageRef(host, path, digest or tag)


@dataclass
class Lookup:
    commands: dict[str, ImageCommand | str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    refusal: str = ""


class _Cache:
    """A bounded LRU keyed by digest, so memory stays flat however many images pass."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > CACHE_ENTRIES:
                self._items.popitem(last=False)


@dataclass(frozen=True)
class _Audited:
    findings: int


class ImageLookup:
    def __init__(self, *, tls_verify: bool, creds: str | None, audit: str, budget: float) -> None:
        if creds:
            from injector.audit.credentials import parse_creds

            parse_creds(creds)  # malformed: a usage error at start (64), not a refusal of every pod later
        self.tls_verify = tls_verify
        self.creds = creds
        self.audit = audit
        self.budget = budget
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="registry")
        self._configs = _Cache()
        self._audits = _Cache()
        self._running: dict[tuple[str, str], Future[Any]] = {}
        self._per_registry: dict[str, int] = {}
        self._running_lock = threading.Lock()
        self._detector_lock = threading.Lock()
        self._detector: Any = None
        from injector.audit.image import machine_platform

        self.platform = machine_platform()

    def review(self, command_images: list[str], audit_images: list[str]) -> Lookup:
        """The commands of `command_images` and the audit of `audit_images`, within the budget."""
        lookup = Lookup()
        if not command_images and not audit_images:
            return lookup
        deadline = time.monotonic() + self.budget
        futures = {("command", i): self._submit("command", i) for i in command_images}
        futures.update({("audit", i): self._submit("audit", i) for i in audit_images})
        wait_all(list(futures.values()), timeout=max(0.0, deadline - time.monotonic()))
        for (kind, image), future in futures.items():
            if not future.done():
                self._late(kind, image, lookup)
                continue
            error = future.exception()
            if kind == "command":
                lookup.commands[image] = future.result() if error is None else _why(error)
            elif error is not None:
                self._unaudited(image, f"could not be audited ({_why(error)})", lookup)
            elif future.result().findings:
                count = future.result().findings
                text = f"image {image} has {count} finding(s) in `stronghold-init audit docker://{image}`"
                if self.audit == "enforce":
                    lookup.refusal = lookup.refusal or f"{text}; refused by --audit enforce"
                else:
                    lookup.warnings.append(text)
        return lookup

    def _late(self, kind: str, image: str, lookup: Lookup) -> None:
        why = f"its registry did not answer within the webhook's {self.budget:g}s budget"
        if kind == "command":
            lookup.commands[image] = why
        else:
            self._unaudited(image, f"was not audited within {self.budget:g}s (the next review gets the result)", lookup)

    def _unaudited(self, image: str, why: str, lookup: Lookup) -> None:
        if self.audit == "enforce":
            lookup.refusal = lookup.refusal or f"image {image} {why}; refused by --audit enforce"
        else:
            lookup.warnings.append(f"image {image} {why}; admitted by --audit warn")

    def _submit(self, kind: str, image: str) -> Future[Any]:
        key = (kind, image)
        try:
            host = parse_image(image).host
        except ValueError as exc:
            return _failed(exc)
        with self._running_lock:
            running = self._running.get(key)
            if running is not None:
                return running  # one task per image: a slow registry does not pile up work
            if len(self._running) >= MAX_PENDING:
                return _failed(StrongholdError(f"{MAX_PENDING} registry lookups are already under way"))
            if self._per_registry.get(host, 0) >= PER_REGISTRY:
                return _failed(StrongholdError(f"{PER_REGISTRY} lookups at {host} are still under way"))
            future = self._pool.submit(self._command if kind == "command" else self._audit, image)
            self._running[key] = future
            self._per_registry[host] = self._per_registry.get(host, 0) + 1

        def done(_: Future[Any]) -> None:
            with self._running_lock:
                if self._running.get(key) is future:
                    del self._running[key]
                    left = self._per_registry.pop(host) - 1
                    if left:
                        self._per_registry[host] = left

        future.add_done_callback(done)
        return future

    # -- in the pool --------------------------------------------------------------------------

    def _client(self, ref: ImageRef) -> Any:
        from injector.audit.registry import RegistryClient

        return RegistryClient(ref.host, ref.repo, tls_verify=self.tls_verify, creds=self.creds)

    def _digest(self, client: Any, ref: ImageRef) -> str:
        """The manifest digest a tag points at now (a HEAD, as `docker pull` resolves it)."""
        if DIGEST.match(ref.reference):
            return ref.reference
        from injector.audit.image import MANIFEST_ACCEPT

        url = f"{client.base}/v2/{ref.repo}/manifests/{ref.reference}"
        response = client._send("HEAD", url, headers={"Accept": MANIFEST_ACCEPT})
        response.close()
        if response.status_code in (401, 403):
            raise StrongholdError(f"the registry refused access to {ref.repo}")
        if response.status_code == 404:
            raise StrongholdError(f"the registry has no {ref.repo}:{ref.reference}")
        digest = response.headers.get("Docker-Content-Digest", "")
        if response.status_code != 200 or not DIGEST.match(digest):
            raise StrongholdError(f"the registry gave no digest for {ref.repo}:{ref.reference}")
        return str(digest)

    def _by_digest(self, image: str, cache: _Cache, read: Callable[[Any, str], Any]) -> Any:
        """`read(client, digest)` for the digest the image names now, once per digest."""
        ref = parse_image(image)
        client = self._client(ref)
        try:
            digest = self._digest(client, ref)
            cached = cache.get(digest)
            if cached is not None:
                return cached
            result = read(client, digest)
        finally:
            client.close()
        cache.put(digest, result)
        return result

    def _command(self, image: str) -> ImageCommand:
        return self._by_digest(image, self._configs, self._read_command)

    def _audit(self, image: str) -> _Audited:
        return self._by_digest(image, self._audits, self._read_audit)

    def _read_command(self, client: Any, digest: str) -> ImageCommand:
        config = client.image(digest, self.platform).config
        inner = config.get("config") if isinstance(config.get("config"), dict) else {}
        entrypoint, cmd = inner.get("Entrypoint"), inner.get("Cmd")
        return ImageCommand(
            tuple(str(a) for a in entrypoint) if isinstance(entrypoint, list) else (),
            tuple(str(a) for a in cmd) if isinstance(cmd, list) else (),
            digest,
        )

    def _read_audit(self, client: Any, digest: str) -> _Audited:
        from injector.audit.scan import audit_image

        findings = audit_image(client.image(digest, self.platform), self._shared_detector())  # no lock: it reads
        return _Audited(len(findings))

    def _shared_detector(self) -> Any:
        with self._detector_lock:
            if self._detector is None:
                from injector.audit.detect import Detector
                from injector.audit.layerpool import _warm

                detector = Detector(strict=False)
                _warm(detector)  # its lazy parts built here, once: a cached_property is not a lock
                self._detector = detector
            return self._detector


def _failed(error: BaseException) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_exception(error)
    return future


def _why(error: BaseException) -> str:
    """One short line: it goes into the answer and the log, and a registry's text is as long as it likes."""
    if isinstance(error, StrongholdError):
        text = error.message
    elif isinstance(error, ValueError):
        text = str(error)
    else:
        return f"the registry lookup failed ({type(error).__name__})"
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"
