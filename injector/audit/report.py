"""Report writers: text grouped by layer, JSON as docs/audit.md, SARIF 2.1.0.

They receive `Finding`s, which hold a redacted prefix and a fingerprint and
never a value: no writer can print a secret.  File names, history lines, tags
and platforms come from the image: every control character and Unicode line
break in them is printed escaped (text), or as a JSON escape (JSON, SARIF), so
an image cannot clear the screen, set a title or forge a "clean" line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from injector import __version__
from injector.audit.findings import Finding
from injector.log import visible

# What json.dumps(ensure_ascii=False) leaves raw though a terminal acts on it; only ever inside strings.
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in [127, *range(0x80, 0xA0), 0x2028, 0x2029]}


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2).translate(_JSON_ESCAPES)


SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/stronghold-init/stronghold-init#image-audit"


@dataclass
class TargetReport:
    target: str
    image: str | None  # the config digest; None for a Dockerfile
    findings: list[Finding]
    layer_lines: dict[int, str] = field(default_factory=dict)  # layer -> its history line
    label: str = ""
    error: str = ""  # set when the target could not be read: it was not audited
    exit_code: int = 0  # that error's exit code
    digest: str = ""  # audit --all: the image's manifest digest (SPEC 10.1)
    platform: str = ""  # audit --all: the platform, for an image of a multi-platform index

    @property
    def clean(self) -> bool:
        return not self.findings and not self.error


def render(reports: list[TargetReport], fmt: str) -> str:
    if fmt == "json":
        return json_report(reports)
    if fmt == "sarif":
        return sarif_report(reports)
    return text_report(reports)


def json_report(reports: list[TargetReport]) -> str:
    return _json_text({"targets": [_json_target(r) for r in reports]})


def _json_target(report: TargetReport) -> dict[str, object]:
    entry: dict[str, object] = {
        "target": report.target,
        "image": report.image,
        "clean": report.clean,
        "findings": [f.as_json() for f in report.findings],
    }
    if report.digest:
        entry["digest"] = report.digest
    if report.platform:
        entry["platform"] = report.platform
    if report.error:  # not audited: never "clean", and why (the documented object has no field for it)
        entry["error"] = report.error
    return entry


def _location(finding: Finding) -> str:
    parts = [finding.where]
    if finding.path:
        parts.append(finding.path)
    if finding.key:
        parts.append(finding.key)
    return " ".join(parts)


def text_report(reports: list[TargetReport]) -> str:
    lines: list[str] = []
    for report in reports:
        title = f"{report.target}" + (f" ({report.label})" if report.label else "")
        image = f" image {report.image}" if report.image else ""
        if report.error:
            lines.append(f"{title}: NOT AUDITED (exit {report.exit_code}): {report.error}")
            continue
        if report.clean:
            lines.append(f"{title}:{image} clean")
            continue
        count = len(report.findings)
        lines.append(f"{title}:{image} {count} finding{'s' if count != 1 else ''}")
        groups: dict[int | None, list[Finding]] = {}
        for finding in report.findings:
            groups.setdefault(finding.layer, []).append(finding)
        for layer in sorted(groups, key=lambda x: -1 if x is None else x):
            if layer is None:
                lines.append("  image config and build file")
            else:
                history = report.layer_lines.get(layer, "")
                lines.append(f"  layer {layer}" + (f": {_short(history)}" if history else ""))
            for finding in groups[layer]:
                if finding.fingerprint is None:  # a name (a build arg, a copied file): no value to identify
                    lines.append(f"    {_location(finding)} [{finding.rule}] fix: {finding.fix}")
                    continue
                lines.append(
                    f"    {_location(finding)}: {finding.redacted} [{finding.rule}] {finding.fingerprint[:19]}… "
                    f"fix: {finding.fix}"
                )
    return "\n".join(visible(line) for line in lines)  # each line is ours; any control character, the image's


def _short(line: str, limit: int = 100) -> str:
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def sarif_report(reports: list[TargetReport]) -> str:
    rules: dict[str, dict] = {}
    results = []
    for report in reports:
        for finding in report.findings:
            rule_id = finding.rule
            rules.setdefault(
                rule_id,
                {
                    "id": rule_id,
                    "name": "".join(part.capitalize() for part in rule_id.replace("/", "-").split("-")),
                    "shortDescription": {"text": f"A credential in an image ({rule_id})"},
                    "help": {"text": "Keep credentials out of images: see stronghold-init's README, Image audit."},
                    "defaultConfiguration": {"level": "error"},
                },
            )
            where = f"{finding.where} {finding.key}" if finding.key else finding.where
            uri = _artifact_uri(report.target, finding)
            location: dict = {"physicalLocation": {"artifactLocation": {"uri": uri}}}
            location["logicalLocations"] = [
                {"name": where, "kind": "member", "fullyQualifiedName": f"{report.target}!{where}"}
            ]
            results.append(
                {
                    "ruleId": rule_id,
                    "level": "error",
                    "message": {
                        "text": f"{finding.where}"
                        + (f" layer {finding.layer}" if finding.layer is not None else "")
                        + (f" {finding.path}" if finding.path else "")
                        + (f" {finding.key}" if finding.key else "")
                        + (f": {finding.redacted}" if finding.redacted is not None else "")
                        + f". Fix: {finding.fix}"
                    },
                    "locations": [location],
                    "partialFingerprints": _partial_fingerprints(finding, report.target),
                    "properties": {
                        "target": report.target,
                        "image": report.image,
                        "where": finding.where,
                        "layer": finding.layer,
                        "path": finding.path,
                        "key": finding.key,
                        "redacted": finding.redacted,
                        "fingerprint": finding.fingerprint,
                    },
                }
            )
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "stronghold-init audit",
                        "version": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
                "columnKind": "unicodeCodePoints",
                "invocations": [_sarif_invocation(reports)],
            }
        ],
    }
    return _json_text(sarif)


def _sarif_invocation(reports: list[TargetReport]) -> dict[str, object]:
    """Targets that could not be read are tool notifications, and make the run unsuccessful."""
    failed = [r for r in reports if r.error]
    invocation: dict[str, object] = {"executionSuccessful": not failed}
    if failed:
        invocation["toolExecutionNotifications"] = [
            {
                "level": "error",
                "message": {"text": f"{r.target}: not audited: {r.error}"},
                "properties": {"target": r.target, "exitCode": r.exit_code},
            }
            for r in failed
        ]
    return invocation


def _partial_fingerprints(finding: Finding, target: str) -> dict[str, str]:
    """The secret's hash; for a finding about a name, the name's place (code scanning matches results by it)."""
    if finding.fingerprint is not None:
        return {"secretSha256/v1": finding.fingerprint.removeprefix("sha256:")}
    import hashlib

    place = f"{target}\0{finding.rule}\0{finding.key}"
    return {"nameFindingSha256/v1": hashlib.sha256(place.encode("utf-8", "surrogatepass")).hexdigest()}


def _artifact_uri(target: str, finding: Finding) -> str:
    """A URI for code scanning: the Dockerfile itself, else the image path of the file, else the target."""
    from urllib.parse import quote

    if finding.where == "dockerfile":
        return quote(target.removeprefix("dockerfile:"))
    if finding.path:
        return quote(finding.path.lstrip("/"))
    return quote(target.split("://", 1)[-1].replace(":", "/"), safe="/@")
