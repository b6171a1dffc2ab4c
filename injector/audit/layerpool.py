"""Each distinct layer scanned once, through the cache, in parallel where the source allows.

Keyed by the layer's content digest (the blob digest, else the diff_id), so an
image that shares a base with a hundred others costs one scan of the base.
Downloads run on `--jobs` threads: the work is hashing, inflating and reading
sockets, and hashlib, zlib and the socket reads release the GIL for large
buffers.  A source read through one shared file (a tar archive) is scanned
inline instead: its members cannot be read at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from injector.audit.cache import LayerCache
from injector.audit.detect import Detector
from injector.audit.image import Layer
from injector.audit.layers import Budget
from injector.audit.layerscan import LayerResult, scan_layer

Progress = Callable[[str], None]


class LayerPool:
    def __init__(self, detector: Detector, cache: LayerCache | None, jobs: int) -> None:
        self.detector = detector
        self.cache = cache
        self.jobs = jobs
        self.executor = ThreadPoolExecutor(jobs, thread_name_prefix="audit-layer") if jobs > 1 else None
        self.futures: dict[str, Future[LayerResult]] = {}
        self.lock = threading.Lock()
        self.bytes_read = 0
        self.scanned = 0
        self.from_cache = 0
        if self.executor is not None:
            _warm(detector)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)

    @property
    def distinct(self) -> int:
        return len(self.futures)

    def submit(
        self,
        layer: Layer,
        *,
        parallel: bool = True,
        progress: Progress | None = None,
        label: str = "",
        budget: Budget | None = None,
    ) -> Future[LayerResult]:
        """The layer's result, scanned once per distinct digest; `budget`: the target's (layers.Budget), which
        the first image to submit a layer charges for reading it."""
        key = layer.blob_digest or layer.diff_id
        if key is not None and key in self.futures:
            return self.futures[key]
        if parallel and self.executor is not None:
            shown = self._locked(progress) if progress is not None else None
            future = self.executor.submit(self._run, layer, key, shown, label, budget)
        else:
            future = Future()
            try:
                future.set_result(self._run(layer, key, progress, label, budget))
            except BaseException as exc:  # kept for every image that holds this layer, like a thread's
                future.set_exception(exc)
        if key is not None:
            self.futures[key] = future
        return future

    def _locked(self, progress: Progress) -> Progress:
        def show(text: str) -> None:
            with self.lock:
                progress(text)

        return show

    def _run(
        self, layer: Layer, key: str | None, progress: Progress | None, label: str, budget: Budget | None
    ) -> LayerResult:
        if self.cache is not None and key is not None:
            cached = self.cache.get(key)
            if cached is not None:
                with self.lock:
                    self.from_cache += 1
                return cached
        result = scan_layer(layer, self.detector, progress, label, budget)
        with self.lock:
            self.bytes_read += result.raw_bytes
            self.scanned += 1
        if self.cache is not None and key is not None:
            self.cache.put(key, result)
        return result


def _warm(detector: Detector) -> None:
    """Build the detector's plugins once, before the threads share them (a cached_property is not a lock)."""
    for name in ("_plugins", "_keyword_gate", "_keyword_regexes"):
        getattr(detector, name)
