"""Audit one image: its config, its history and every layer's files, in layer order."""

from __future__ import annotations

import re
from collections.abc import Callable

from injector.audit.detect import Detector
from injector.audit.errors import BadImageError
from injector.audit.findings import Finding, fix_for
from injector.audit.image import MAX_LAYERS, Image, history_per_layer
from injector.audit.layerpool import LayerPool
from injector.audit.layers import Budget

# `|2 TOKEN=abc VERSION=1 /bin/sh -c ...`: how podman and docker record build args on a RUN line
BUILD_ARGS = re.compile(r"^\|(\d+)\s+")
ARG_PAIR = re.compile(r"""([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|\S*)\s*""")
ENV_LINE = re.compile(r"^(?:/bin/sh -c )?(?:#\(nop\)\s*)?(ENV|LABEL)\s+(.*)$", re.DOTALL)
Progress = Callable[[str], None]


def audit_image(
    image: Image,
    detector: Detector,
    progress: Progress | None = None,
    pool: LayerPool | None = None,
    budget: Budget | None = None,
) -> list[Finding]:
    """-> findings; the history lines the report may quote are made safe by `safe_history_line`.

    `budget`: the target's (shared by every image of one archive), so repeats cannot multiply the work.
    """
    if len(image.layers) > MAX_LAYERS:
        raise BadImageError(
            f"{image.label or 'the image'}: {len(image.layers)} layers; no engine runs more than {MAX_LAYERS}"
        )
    findings = metadata_findings(image, detector)
    findings += _layer_findings(image, detector, progress, pool, budget if budget is not None else Budget())
    return _dedupe(findings)


def metadata_findings(image: Image, detector: Detector) -> list[Finding]:
    """What the config and history say, without reading a layer (audit --all does this once per image)."""
    return _config_findings(image, detector) + _history_findings(image, detector)


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
                    named = hit_key or key
                    fix = fix_for("build-arg", named)
                    out.append(Finding.of(found, where="history", rule=rule, key=named, layer=layer, fix=fix))
        env = ENV_LINE.match(rest.strip())
        if env:
            for key, value in _pairs(env.group(2)):
                for rule, hit_key, found in detector.check_assignment(key, value):
                    where_fix = fix_for("env" if env.group(1) == "ENV" else "label", hit_key or key)
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


def _layer_findings(
    image: Image, detector: Detector, progress: Progress | None, pool: LayerPool | None, budget: Budget
) -> list[Finding]:
    """Each layer scanned into a position-free result (layerscan.py), then placed: which later layer deleted what."""
    from injector.audit.layerscan import image_findings

    own = pool is None
    pool = pool or LayerPool(detector, None, 1)
    try:
        total = len(image.layers)
        futures = [
            pool.submit(
                layer,
                parallel=image.parallel,
                progress=progress,
                label=f"layer {layer.index + 1}/{total} ",
                budget=budget,
            )
            for layer in image.layers
        ]
        return image_findings([future.result() for future in futures])
    finally:
        if own:
            pool.close()


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[object, ...]] = set()
    out = []
    for finding in findings:
        identity = (finding.where, finding.layer, finding.path, finding.key, finding.fingerprint)
        if identity not in seen:
            seen.add(identity)
            out.append(finding)
    return out
