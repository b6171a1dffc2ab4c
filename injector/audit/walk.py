"""`audit --all docker://HOST[/PREFIX]`: every repository, every tag, each layer read once (SPEC 10.1).

The walk lists the catalog and each repository's tags (both paginated by
`Link` headers), resolves each tag's manifest (every platform of an index
unless --platform picks one), and audits each distinct image once: tags with
one manifest digest share its report.  Layers go to a LayerPool keyed by
digest, so the cost follows the number of distinct layers, not of tags.
Per image only the metadata findings and the futures of its layers are kept,
never a config or a layer's bytes: memory stays flat in the number of images.

A repository or tag that fails (401, 404, a broken manifest, a layer whose
digest does not match) is reported as not audited, and the walk goes on.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urljoin

from injector.audit.detect import Detector
from injector.audit.errors import AuditUsageError, BadImageError, NoInputError, RegistryUnavailableError
from injector.audit.findings import Finding
from injector.audit.image import (
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    MAX_JSON,
    check_digest,
    choose_platform,
    history_per_layer,
    parse_json,
    resolve_manifest,
)
from injector.audit.layerpool import LayerPool
from injector.audit.layerscan import LayerResult, image_findings
from injector.audit.progress import Progress
from injector.audit.report import TargetReport
from injector.errors import StrongholdError

T = TypeVar("T")
Item = TypeVar("Item")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.audit.registry import RegistryClient  # requests: imported for real only once listing starts

ALL_TARGET = re.compile(
    r"^docker://(?P<host>(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?)(?:/(?P<prefix>[a-z0-9._/-]*))?$"
)
NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
LINK_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')
MAX_PAGE = 8 * 1024 * 1024  # one page of a catalog or tag list
MAX_PAGES = 100_000  # a registry whose `next` links never end is broken, not big
MAX_NAMES = 1_000_000  # repositories in a catalog, or tags in one repository
ATTESTATION = "attestation-manifest"
META_THREADS = 8  # concurrent small requests (tag lists, manifests, configs) to the registry
META_WINDOW = 16  # how far ahead of the resolution they run: bounds what is held, whatever the registry's size


def parse_all_target(given: str) -> tuple[str, str]:
    """`docker://HOST[:PORT][/PREFIX]` -> (host, prefix)."""
    match = ALL_TARGET.match(given)
    if not match:
        raise AuditUsageError(f"--all takes docker://HOST[:PORT][/PREFIX], not {given!r}")
    return match.group("host"), match.group("prefix") or ""


@dataclass
class _Image:
    """One distinct image (a platform manifest digest): what its report needs, nothing more."""

    digest: str
    config_digest: str
    metadata: list[Finding]
    lines: dict[int, str]
    layers: list[Future[LayerResult]]
    platform: str = ""
    report: tuple[list[Finding], str, int] | None = None  # (findings, error, exit code), once its layers are done


@dataclass
class _Fetched:
    """A tag's manifest as fetched, and the small blobs fetched ahead for it (by digest, verified)."""

    data: bytes
    digest: str
    blobs: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Entry:
    """One line of the report: a tag (and platform), or a repository or tag that could not be read."""

    target: str
    images: list[str] = field(default_factory=list)  # keys of _Image
    multi: bool = False
    error: str = ""
    exit_code: int = 0


class RegistryWalk:
    def __init__(
        self,
        given: str,
        *,
        tls_verify: bool,
        creds: str | None,
        platform: str | None,
        detector: Detector,
        pool: LayerPool,
        progress: Progress,
    ) -> None:
        self.given = given
        self.host, self.prefix = parse_all_target(given)
        self.tls_verify = tls_verify
        self.creds = creds
        self.platform = platform
        self.detector = detector
        self.pool = pool
        self.progress = progress
        self.images: dict[str, _Image] = {}
        self.by_manifest: dict[str, tuple[list[str], bool]] = {}  # a tag's manifest digest -> image keys, an index?
        self.entries: list[_Entry] = []
        self.repositories = 0
        self.tags = 0
        self.started = time.monotonic()
        self.base = ""

    # -- the registry's API -----------------------------------------------------------------------

    def _client(self, repo: str, scope: str | None = None) -> RegistryClient:
        from injector.audit.registry import RegistryClient

        kind = _known_base(self.base) if self.base else RegistryClient
        return kind(self.host, repo, tls_verify=self.tls_verify, creds=self.creds, progress=self.progress, scope=scope)

    def _pages(self, client: RegistryClient, path: str, field_name: str, what: str) -> list[str]:
        """Every name of a paginated list (the catalog, a tag list), following `Link: <...>; rel="next"`."""
        from injector.audit.registry import _bounded_read

        names: list[str] = []
        url = f"{client.base}{path}"
        seen: set[str] = set()
        while url:
            if url in seen or len(seen) >= MAX_PAGES:
                raise BadImageError(f"{self.host}: the {what} pagination loops")
            seen.add(url)
            response = client._get(url, stream=True)
            client._check(response, what)
            body = parse_json(_bounded_read(response, MAX_PAGE, what), f"{self.host}: the {what}")
            page = body.get(field_name)
            if page is None:
                page = []  # a repository whose tags were all deleted lists `"tags": null`
            if not isinstance(page, list) or not all(isinstance(n, str) for n in page):
                raise BadImageError(f"{self.host}: the {what} is not a list of names")
            names += page
            if len(names) > MAX_NAMES:
                raise BadImageError(f"{self.host}: the {what} lists more than {MAX_NAMES} names")
            url = self._next(response.headers.get("Link", ""), client.base)
        return names

    def _next(self, link: str, base: str) -> str:
        match = LINK_NEXT.search(link)
        if not match:
            return ""
        url = urljoin(base + "/", match.group(1))
        if not url.startswith(base + "/v2/"):
            raise BadImageError(f"{self.host}: a pagination link leaves the registry")
        return url

    # -- the walk ---------------------------------------------------------------------------------

    def run(self) -> list[TargetReport]:
        catalog = self._client("", scope="registry:catalog:*")
        try:
            self.base = catalog.base
            repositories = self._pages(catalog, "/v2/_catalog", "repositories", "catalog")
        except NoInputError:
            raise RegistryUnavailableError(f"{self.host}: the registry serves no catalog (/v2/_catalog)") from None
        finally:
            catalog.close()
        chosen = []
        for repo in (r for r in repositories if r.startswith(self.prefix)):
            self.repositories += 1
            if not NAME.match(repo) or len(repo) > 255:
                self._failed(f"docker://{self.host}/{ascii(repo)[1:-1][:80]}", "not a valid repository name", 65)
            else:
                chosen.append(repo)
        clients: list[RegistryClient] = []
        # Tag lists, manifests and configs are small requests that wait on the network (and on the
        # registry): fetched on threads a window ahead, across repositories, then resolved here in
        # order.  Not --jobs: that bounds layer downloads, the bytes; these are round trips.
        with ThreadPoolExecutor(META_THREADS, thread_name_prefix="audit-meta") as meta:
            try:
                tags = self._tags(meta, chosen, clients)
                for (client, repo, tag), fetched in _ahead(meta, self._fetch_item, tags, META_WINDOW):
                    target = f"docker://{self.host}/{repo}:{tag}"
                    self._update(repo)
                    try:
                        self.entries.append(self._tag(client, repo, tag, target, fetched.result()))
                    except StrongholdError as exc:
                        self._failed(target, exc.message, int(exc.exit_code))
                return self._reports()
            finally:
                for client in clients:
                    client.close()

    def _tags(
        self, meta: ThreadPoolExecutor, repositories: list[str], clients: list[RegistryClient]
    ) -> Iterator[tuple[RegistryClient, str, str]]:
        """Every valid (client, repository, tag), in catalog order; a repository that fails is reported."""
        for repo, opened in _ahead(meta, self._open_repository, repositories, META_WINDOW):
            where = f"docker://{self.host}/{repo}"
            try:
                client, tags = opened.result()
            except StrongholdError as exc:
                self._failed(where, exc.message, int(exc.exit_code))
                continue
            clients.append(client)
            for tag in tags:
                self.tags += 1
                if TAG.match(tag):
                    yield client, repo, tag
                else:
                    self._failed(f"{where}:{ascii(tag)[1:-1][:80]}", "not a valid tag", 65)

    def _open_repository(self, repo: str) -> tuple[RegistryClient, list[str]]:
        client = self._client(repo)
        try:
            return client, self._pages(client, f"/v2/{repo}/tags/list", "tags", f"tag list of {repo}")
        except BaseException:
            client.close()
            raise

    def _fetch_item(self, item: tuple[RegistryClient, str, str]) -> _Fetched:
        return self._fetch_tag(*item)

    def _fetch_tag(self, client: RegistryClient, repo: str, tag: str) -> _Fetched:
        """A tag's manifest, and (for an image not seen yet) its configs and platform manifests, on a thread."""
        from injector.audit.registry import _bounded_read

        response = client._get(
            f"{client.base}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}, stream=True
        )
        client._check(response, f"manifest {tag}")
        data = _bounded_read(response, MAX_JSON, "a manifest")
        fetched = _Fetched(data, "sha256:" + hashlib.sha256(data).hexdigest())
        if fetched.digest in self.by_manifest:
            return fetched
        try:  # only a head start: whatever fails here fails again, properly, in _tag
            manifest = parse_json(data, "a manifest")
            if "manifests" in manifest or manifest.get("mediaType") in INDEX_TYPES:
                for entry in self._platforms(manifest, repo):
                    digest = check_digest(entry.get("digest"), "a manifest entry")
                    if digest in self.images:
                        continue
                    inner = client._small_blob(digest, f"manifest {digest}")
                    fetched.blobs[digest] = inner
                    self._prefetch_config(client, parse_json(inner, "a manifest"), fetched)
            else:
                self._prefetch_config(client, manifest, fetched)
        except StrongholdError:
            pass
        return fetched

    def _prefetch_config(self, client: RegistryClient, manifest: dict, fetched: _Fetched) -> None:
        config = manifest.get("config")
        digest = config.get("digest") if isinstance(config, dict) else None
        if isinstance(digest, str):
            fetched.blobs[digest] = client._small_blob(check_digest(digest, "the config"), "the image config")

    def _tag(self, client: RegistryClient, repo: str, tag: str, target: str, fetched: _Fetched) -> _Entry:
        digest = fetched.digest
        if digest in self.by_manifest:  # another tag of the same image: audited once, reported under each
            keys, multi = self.by_manifest[digest]
            return _Entry(target, keys, multi=multi)
        manifest = parse_json(fetched.data, f"{self.host}/{repo}: manifest {tag}")
        what = f"{self.host}/{repo}:{tag}"
        if "manifests" in manifest or manifest.get("mediaType") in INDEX_TYPES:
            entries = self._platforms(manifest, what)
            keys = [
                self._image(client, repo, check_digest(e.get("digest"), what), None, _platform(e), fetched)
                for e in entries
            ]
            multi = True
        else:
            keys = [self._image(client, repo, digest, manifest, "", fetched)]
            multi = False
        self.by_manifest[digest] = (keys, multi)
        return _Entry(target, keys, multi=multi)

    def _platforms(self, index: dict, what: str) -> list[dict]:
        manifests = index.get("manifests")
        if not isinstance(manifests, list) or not manifests:
            raise BadImageError(f"{what}: an index without manifests")
        images = [
            m
            for m in manifests
            if isinstance(m, dict)
            and (m.get("annotations") or {}).get("vnd.docker.reference.type") != ATTESTATION
            and _platform(m) != "unknown/unknown"
        ]  # build attestations (buildx) are manifests of no image
        if self.platform:
            return [choose_platform(images, self.platform, what)]
        if not images:
            raise BadImageError(f"{what}: an index of no image")
        return images

    def _image(
        self, client: RegistryClient, repo: str, digest: str, manifest: dict | None, platform: str, fetched: _Fetched
    ) -> str:
        """The key of the image with this manifest digest, resolved and its layers submitted on first sight."""
        from injector.audit.scan import metadata_findings, safe_history_line

        if digest in self.images:
            return digest

        def blob(wanted: str, what: str) -> bytes:
            found = fetched.blobs.pop(wanted, None)  # verified against its digest when fetched
            return found if found is not None else client._small_blob(wanted, what)

        if manifest is None:
            manifest = parse_json(blob(digest, f"manifest {digest}"), f"manifest {digest}")
        image = resolve_manifest(manifest, blob, client._open_layer, self.platform or "", f"{self.host}/{repo}")
        _, lines = history_per_layer(image)
        safe = {layer: safe_history_line(line, self.detector) for layer, line in lines.items()}
        futures = [self.pool.submit(layer) for layer in image.layers]
        self.images[digest] = _Image(
            digest, image.config_digest, metadata_findings(image, self.detector), safe, futures, platform
        )
        return digest

    def _failed(self, target: str, message: str, code: int) -> None:
        from injector.log import log

        self.progress.clear()
        log.error(message)
        self.entries.append(_Entry(target, error=message, exit_code=code))

    # -- the reports ------------------------------------------------------------------------------

    def _reports(self) -> list[TargetReport]:
        from injector.audit.scan import _dedupe

        for done, image in enumerate(self.images.values()):
            pending = set(image.layers)
            while pending:
                _, pending = wait(pending, timeout=0.25)
                self._update("", done)
            try:
                findings = _dedupe(image.metadata + image_findings([f.result() for f in image.layers]))
                image.report = (findings, "", 0)
            except StrongholdError as exc:
                self.progress.clear()
                from injector.log import log

                log.error(exc.message)
                image.report = ([], exc.message, int(exc.exit_code))
            image.layers = []  # the results stay in the pool, once
        reports: list[TargetReport] = []
        for entry in self.entries:
            if entry.error:
                reports.append(TargetReport(entry.target, None, [], error=entry.error, exit_code=entry.exit_code))
                continue
            for key in entry.images:
                image = self.images[key]
                assert image.report is not None
                findings, error, code = image.report
                report = TargetReport(
                    entry.target,
                    None if error else image.config_digest,
                    findings,
                    image.lines,
                    label=image.platform if entry.multi else "",
                    error=error,
                    exit_code=code,
                )
                report.digest = image.digest
                report.platform = image.platform if entry.multi else ""
                reports.append(report)
        self.progress.clear()
        return reports

    def _update(self, repo: str, done: int | None = None) -> None:
        if not self.progress.enabled:
            return
        read = self.pool.bytes_read / 1e6
        if done is None:
            self.progress.update(f"{len(self.images)} images so far, {read:.0f} MB read, {repo}")
        else:
            self.progress.update(f"{done}/{len(self.images)} images, {read:.0f} MB read")

    def summary(self, reports: list[TargetReport]) -> str:
        findings = sum(len(r.findings) for r in reports)
        seconds = time.monotonic() - self.started
        return (
            f"{len(self.images)} images under {self.tags} tags in {self.repositories} repositories; "
            f"{self.pool.distinct} distinct layers ({self.pool.from_cache} from the cache), "
            f"{self.pool.bytes_read / 1e6:.1f} MB read; {findings} findings; {seconds:.1f} s"
        )


def _ahead(
    executor: ThreadPoolExecutor, work: Callable[[Item], T], items: Iterable[Item], window: int
) -> Iterator[tuple[Item, Future[T]]]:
    """Each item with the future of `work(item)`, in order, at most `window` started ahead of the consumer."""
    pending: deque[tuple[Item, Future[T]]] = deque()
    for item in items:
        pending.append((item, executor.submit(work, item)))
        if len(pending) >= window:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


@functools.cache
def _known_base(base: str) -> type[RegistryClient]:
    """A client that pings the scheme the catalog's client found, instead of trying https first per repository."""
    import requests

    from injector.audit.registry import RegistryClient, _RetryableError

    class KnownBase(RegistryClient):
        def _pick_scheme(self) -> str:
            try:
                self._ping(base)
            except _RetryableError as exc:
                raise RegistryUnavailableError(f"{exc}; is the registry running?") from None
            except requests.exceptions.SSLError:
                raise RegistryUnavailableError(f"{self.host}: TLS failed") from None
            return base

    return KnownBase


def _platform(descriptor: dict) -> str:
    plat = descriptor.get("platform")
    if not isinstance(plat, dict):
        return ""
    text = f"{plat.get('os', '')}/{plat.get('architecture', '')}"
    return f"{text}/{plat['variant']}" if plat.get("variant") else text
