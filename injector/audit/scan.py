"""Audit one image: its config, its history and every layer's files, in layer order."""

from __future__ import annotations

import re
from collections.abc import Callable

from injector.audit.detect import Detector, is_known_credential_file
from injector.audit.errors import BadImageError
from injector.audit.findings import Finding
from injector.audit.image import MAX_LAYERS, Image, history_per_layer
from injector.audit.layers import Budget, Whiteouts, open_layer_stream, read_windows, walk, worth_reading

# `|2 TOKEN=abc VERSION=1 /bin/sh -c ...`: how podman and docker record build args on a RUN line
BUILD_ARGS = re.compile(r"^\|(\d+)\s+")
ARG_PAIR = re.compile(r"""([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|\S*)\s*""")
ENV_LINE = re.compile(r"^(?:/bin/sh -c )?(?:#\(nop\)\s*)?(ENV|LABEL)\s+(.*)$", re.DOTALL)
Progress = Callable[[str], None]


def audit_image(
    image: Image, detector: Detector, progress: Progress | None = None, budget: Budget | None = None
) -> list[Finding]:
    """-> findings; the history lines the report may quote are made safe by `safe_history_line`.

    `budget`: the target's (shared by every image of one archive), so repeats cannot multiply the work.
    """
    if len(image.layers) > MAX_LAYERS:
        raise BadImageError(
            f"{image.label or 'the image'}: {len(image.layers)} layers; no engine runs more than {MAX_LAYERS}"
        )
    findings: list[Finding] = []
    findings += _config_findings(image, detector)
    findings += _history_findings(image, detector)
    findings += _layer_findings(image, detector, progress, budget if budget is not None else Budget())
    return _dedupe(findings)


def _config_findings(image: Image, detector: Detector) -> list[Finding]:
    found = image.config.get("config")
    if not isinstance(found, dict):
        found = image.config.get("container_config")
    config: dict = found if isinstance(found, dict) else {}
    out: list[Finding] = []
    for entry in config.get("Env") or []:
        if isinstance(entry, str) and "=" in entry:
            key, _, value = entry.partition("=")
            for rule, hit_key, value_found in detector.check_assignment(key, value):
                out.append(Finding.of(value_found, where="env", rule=rule, key=hit_key or key))
    labels = config.get("Labels")
    if isinstance(labels, dict):
        for key, value in labels.items():
            if isinstance(value, str):
                for rule, hit_key, value_found in detector.check_assignment(str(key), value):
                    out.append(Finding.of(value_found, where="label", rule=rule, key=hit_key or str(key)))
    for field in ("Entrypoint", "Cmd"):
        argv = config.get(field)
        if isinstance(argv, list):
            line = " ".join(str(a) for a in argv)
            for rule, found_key, value_found in detector.scan_line(line, filename=""):
                out.append(Finding.of(value_found, where="command", rule=rule, key=found_key or field))
    return out


def _history_findings(image: Image, detector: Detector) -> list[Finding]:
    out: list[Finding] = []
    entries, _ = history_per_layer(image)
    for layer, entry in entries:
        line = str(entry.get("created_by", ""))
        if not line:
            continue
        rest = line
        match = BUILD_ARGS.match(line)
        if match:
            rest = line[match.end() :]
            for _ in range(int(match.group(1))):
                pair = ARG_PAIR.match(rest)
                if not pair:
                    break
                rest = rest[pair.end() :]
                key, value = pair.group(1), pair.group(2)
                for rule, hit_key, found in detector.check_assignment(key, value):
                    out.append(
                        Finding.of(
                            found, where="history", rule=rule, key=hit_key or key, layer=layer, fix=_fix("build-arg")
                        )
                    )
        env = ENV_LINE.match(rest.strip())
        if env:
            for key, value in _pairs(env.group(2)):
                for rule, hit_key, found in detector.check_assignment(key, value):
                    where_fix = _fix("env") if env.group(1) == "ENV" else _fix("label")
                    out.append(
                        Finding.of(found, where="history", rule=rule, key=hit_key or key, layer=layer, fix=where_fix)
                    )
            continue
        for rule, key, found in detector.scan_line(rest, filename=""):
            out.append(Finding.of(found, where="history", rule=rule, key=key, layer=layer))
    return out


def safe_history_line(line: str, detector: Detector) -> str:
    """A history line fit for a report: build-arg values and every detected value cut to a redacted prefix."""
    from injector.audit.findings import redact

    match = BUILD_ARGS.match(line)
    if match:
        head, rest = line[: match.end()], line[match.end() :]
        for _ in range(int(match.group(1))):
            pair = ARG_PAIR.match(rest)
            if not pair:
                break
            head += f"{pair.group(1)}={redact(pair.group(2))} "
            rest = rest[pair.end() :]
        line = head + rest
    for _rule, _key, value in list(detector.scan_line(line, filename="")):
        line = line.replace(value, redact(value))
    env = ENV_LINE.match(line.strip())
    if env:
        for key, value in _pairs(env.group(2)):
            if list(detector.check_assignment(key, value)):
                line = line.replace(value, redact(value))
    return line


def _pairs(text: str) -> list[tuple[str, str]]:
    """`ENV A=1 B="x y"` and the old `ENV A 1` form."""
    text = text.strip()
    pairs = [(m.group(1), m.group(2)) for m in ARG_PAIR.finditer(text)]
    if pairs:
        return pairs
    key, _, value = text.partition(" ")
    return [(key, value)] if key and value else []


def _fix(kind: str) -> str:
    from injector.audit.findings import FIX

    return FIX[kind]


TEXT_BATCH = 4 * 1024 * 1024  # text windows are searched for triggers this much at a time


def _layer_findings(image: Image, detector: Detector, progress: Progress | None, budget: Budget) -> list[Finding]:
    whiteouts = Whiteouts()
    by_file: dict[tuple[str, int], list[Finding]] = {}
    total = len(image.layers)
    for layer in image.layers:
        what = f"layer {layer.index} ({layer.name})"
        batch: list[tuple[str, bytes]] = []
        batched = 0
        stream, close = open_layer_stream(layer, what, budget)
        try:
            for member, content in walk(stream, what):
                whiteouts.seen(member, layer.index)
                if content is None or not worth_reading(member.path):
                    continue
                if progress is not None:
                    progress(f"layer {layer.index + 1}/{total} {member.path[:60]}")
                # A known credential file is read whatever it holds: a NUL (or a sparse hole) after the
                # secret does not stop an app reading it, so it must not stop the audit.
                for window in read_windows(content, what, always=is_known_credential_file(member.path)):
                    batch.append((member.path, window))
                    batched += len(window)
                    if batched >= TEXT_BATCH:
                        _scan_batch(batch, layer.index, detector, by_file, whiteouts)
                        batched = 0
            _scan_batch(batch, layer.index, detector, by_file, whiteouts)
            stream.drain()
        finally:
            close()
    out: list[Finding] = []
    for (path, index), found in by_file.items():
        deleted_by = whiteouts.deleted.get((path, index))
        for finding in found:
            if deleted_by is None:
                out.append(finding)
            else:
                fix = (
                    f"layer {deleted_by} deletes or replaces it, but layer {index} still holds it whole: "
                    "rebuild without it (--mount=type=secret) and rotate it"
                )
                out.append(finding.moved(where="deleted-file", fix=fix))
    return out


def _scan_batch(
    batch: list[tuple[str, bytes]],
    layer: int,
    detector: Detector,
    by_file: dict[tuple[str, int], list[Finding]],
    whiteouts: Whiteouts,
) -> None:
    """Scan the batched text windows of one layer, record their findings, empty the batch."""
    # Found at the end of a batch, not file by file: Whiteouts only lets a *later* layer delete.
    for (path, _), hits in zip(batch, detector.scan_texts(batch), strict=True):
        if not hits:
            continue
        found = by_file.setdefault((path, layer), [])
        for rule, key, value in hits:
            found.append(Finding.of(value, where="file", rule=rule, key=key, path=path, layer=layer))
        whiteouts.found(path, layer)
    batch.clear()


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[object, ...]] = set()
    out = []
    for finding in findings:
        identity = (finding.where, finding.layer, finding.path, finding.key, finding.fingerprint)
        if identity not in seen:
            seen.add(identity)
            out.append(finding)
    return out
