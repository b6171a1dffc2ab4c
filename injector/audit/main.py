"""`stronghold-init audit`: targets -> images -> findings -> one report -> exit code."""

from __future__ import annotations

import sys
from collections.abc import Iterator

from injector.audit.errors import FINDINGS, AuditUsageError, BadImageError, NoInputError
from injector.audit.image import Image, history_per_layer, machine_platform
from injector.audit.progress import Progress
from injector.audit.report import TargetReport, render
from injector.audit.targets import Target, parse_target
from injector.errors import StrongholdError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.audit.detect import Detector  # imported for real only once the targets are valid
    from injector.audit.layerpool import LayerPool
    from injector.audit.layers import Budget

FORMATS = ("text", "json", "sarif")
REGISTRY_TIMEOUT = 1800.0  # seconds one docker:// target may take in all: a dripping registry fails (69)


def audit(options: dict[str, object]) -> int:
    """Audit every target; print one report on stdout; exit with the most severe outcome.

    A target that cannot be read (65, 66, 69, 77) does not stop the others: its
    error is one line on stderr, and the report (printed when at least one target
    was read) lists it as not audited.  The exit code is the highest of the targets'
    codes: any error (64 < code) outranks findings (1), which outrank clean (0).
    """
    fmt = str(options.get("format") or "text")
    if fmt not in FORMATS:
        raise AuditUsageError(f"--format must be one of {', '.join(FORMATS)}")
    tls_verify = _tls_verify(options.get("tls_verify"))
    _seconds(options.get("registry_timeout"))  # a usage error before anything is read
    wanted_platform = str(options.get("platform") or machine_platform())
    if wanted_platform.count("/") not in (1, 2):
        raise AuditUsageError(f"--platform {wanted_platform!r} is not OS/ARCH[/VARIANT]")
    jobs = _jobs(options.get("jobs"))
    if options.get("all"):
        from injector.audit.walk import parse_all_target

        walks = [str(t) for t in options.get("targets") or []]  # type: ignore[attr-defined]
        if not walks:
            raise AuditUsageError("audit --all needs docker://HOST[:PORT][/PREFIX]")
        for given in walks:
            parse_all_target(given)  # every usage error before the first request
        targets: list[tuple[str, Target | NoInputError]] = []
    else:
        targets = _parse_targets(options.get("targets"))
    from injector.audit.detect import Detector
    from injector.audit.layerpool import LayerPool
    from injector.log import log

    detector = Detector(strict=bool(options.get("strict")))
    cache = None
    if options.get("cache"):
        from injector.audit.cache import LayerCache, rules_version

        cache = LayerCache(str(options["cache"]), rules_version(bool(options.get("strict"))))
    pool = LayerPool(detector, cache, jobs)
    progress = Progress.for_stderr()
    reports: list[TargetReport] = []
    try:
        if options.get("all"):
            reports += _walk_all(walks, tls_verify, options, detector, pool, progress)
        for given, target in targets:
            try:
                if isinstance(target, NoInputError):
                    raise target
                reports += _audit_target(target, wanted_platform, tls_verify, options, detector, progress, pool)
            except AuditUsageError:
                raise
            except StrongholdError as exc:
                progress.clear()
                log.error(exc.message)
                reports.append(TargetReport(given, None, [], error=exc.message, exit_code=int(exc.exit_code)))
    finally:
        progress.clear()
        pool.close()
        if cache is not None:
            if cache.write_failed:
                log.warning(f"--cache {cache.path}: results not kept ({cache.write_failed})")
            cache.close()
    worst = max((r.exit_code if r.error else 0 if r.clean else FINDINGS for r in reports), default=0)
    if reports and all(r.error for r in reports):
        return worst  # nothing was read: the error lines on stderr are the whole answer
    # UTF-8 whatever the locale: a redacted value ends in "…(N)", and an ASCII-only stdout must not crash it
    sys.stdout.flush()
    sys.stdout.buffer.write((render(reports, fmt) + "\n").encode("utf-8"))
    sys.stdout.buffer.flush()
    return worst


def _walk_all(
    walks: list[str],
    tls_verify: bool,
    options: dict[str, object],
    detector: Detector,
    pool: LayerPool,
    progress: Progress,
) -> list[TargetReport]:
    """Each registry walked (SPEC 10.1); one that cannot be listed at all is one not-audited target."""
    from injector.audit.walk import RegistryWalk
    from injector.log import log

    reports: list[TargetReport] = []
    for given in walks:
        walk = RegistryWalk(
            given,
            tls_verify=tls_verify,
            creds=str(options["creds"]) if options.get("creds") else None,
            platform=str(options["platform"]) if options.get("platform") else None,
            detector=detector,
            pool=pool,
            progress=progress,
        )
        try:
            found = walk.run()
        except AuditUsageError:
            raise
        except StrongholdError as exc:
            progress.clear()
            log.error(exc.message)
            reports.append(TargetReport(given, None, [], error=exc.message, exit_code=int(exc.exit_code)))
            continue
        progress.clear()
        log.info(f"audited {given}: {walk.summary(found)}")
        reports += found
    return reports


def _jobs(value: object) -> int:
    if value is None:
        return 4
    text = str(value)
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise AuditUsageError(f"--jobs takes a number from 1 to 64, not {text!r}")
    return int(text)


def _parse_targets(given_targets: object) -> list[tuple[str, Target | NoInputError]]:
    """Usage errors in any TARGET stop the run before anything is read; a missing file is that target's own."""
    targets: list[tuple[str, Target | NoInputError]] = []
    for given in given_targets if isinstance(given_targets, list) else []:
        try:
            targets.append((str(given), parse_target(str(given))))
        except NoInputError as exc:
            targets.append((str(given), exc))
    if not targets:
        raise AuditUsageError("audit needs at least one TARGET")
    return targets


def _audit_target(
    target: Target,
    wanted_platform: str,
    tls_verify: bool,
    options: dict[str, object],
    detector: Detector,
    progress: Progress,
    pool: LayerPool,
) -> list[TargetReport]:
    """The reports of one target (an archive or index may hold several images); raises on the first error."""
    if target.kind == "dockerfile":
        from injector.audit.dockerfile import check_dockerfile

        return [TargetReport(target.given, None, check_dockerfile(target.path, detector))]
    import os

    from injector.audit.image import MAX_IMAGES
    from injector.audit.layers import Budget

    on_disk = target.kind in ("docker-archive", "oci-archive", "archive")
    budget = Budget(os.stat(target.path).st_size if on_disk else None)  # one per target, for all its images
    reports = []
    for count, image in enumerate(_images(target, wanted_platform, tls_verify, options, progress, pool)):
        if count >= MAX_IMAGES:
            raise BadImageError(f"{target.given}: more than {MAX_IMAGES} images in one target; refusing")
        reports.append(_audit(target, image, detector, progress, pool, budget))
    return reports


def _audit(
    target: Target, image: Image, detector: Detector, progress: Progress, pool: LayerPool, budget: Budget
) -> TargetReport:
    from injector.audit.scan import audit_image, safe_history_line

    # Layers on threads only from a registry, where they wait on the network: from a local disk the
    # work is Python's, and two layers scanned on threads ran slower than one after the other
    # (docs/benchmarks.md: the GIL, not the disk, is the limit).
    image.parallel = target.kind == "docker"
    findings = audit_image(image, detector, progress.update if progress.enabled else None, pool, budget)
    _, lines = history_per_layer(image)
    safe = {layer: safe_history_line(line, detector) for layer, line in lines.items()}
    return TargetReport(target.given, image.config_digest, findings, safe, image.label)


def _images(
    target: Target,
    wanted_platform: str,
    tls_verify: bool,
    options: dict[str, object],
    progress: Progress,
    pool: LayerPool,
) -> Iterator[Image]:
    from injector.audit import archive

    if target.kind == "local":
        from injector.audit.local import engine_images

        yield from engine_images(target.given, target.path, target.engine, pool, progress)
        return
    if target.kind == "docker":
        from injector.audit.registry import RegistryClient

        client = RegistryClient(
            target.host,
            target.repo,
            tls_verify=tls_verify,
            creds=str(options["creds"]) if options.get("creds") else None,
            progress=progress,
            deadline=_seconds(options.get("registry_timeout")),
        )
        try:
            yield client.image(target.reference, wanted_platform)
        finally:
            client.close()
        return
    if target.kind == "oci":
        import os

        if not os.path.isdir(target.path):
            raise BadImageError(
                f"{target.path}: not a directory; an OCI layout is a directory (oci-archive: for a tar)"
            )
        layout = archive.LayoutDir(target.path)
        try:
            yield from archive.read_oci(layout, wanted_platform, target.tag)
        finally:
            layout.close()
        return
    kind = target.kind if target.kind != "archive" else None
    tar, found = archive.open_archive(target.path, kind)
    try:
        if found == "docker":
            yield from archive.read_docker_archive(tar)
        else:
            yield from archive.read_oci(tar, wanted_platform, None)
    finally:
        tar.close()


def _tls_verify(value: object) -> bool:
    if value is None or value is True:
        return True
    text = str(value).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise AuditUsageError(f"--tls-verify takes true or false, not {value!r}")


def _seconds(value: object) -> float:
    if value is None:
        return REGISTRY_TIMEOUT
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise AuditUsageError(f"--registry-timeout takes seconds (0 < N <= 86400), not {str(value)[:20]!r}")
    return seconds
