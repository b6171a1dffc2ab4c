"""TARGET strings (docs/audit.md, skopeo's syntax) -> what to read."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from injector.audit.errors import AuditUsageError, NoInputError

PREFIXES = ("docker-archive:", "oci-archive:", "oci:", "docker://", "dockerfile:")
# A local engine's image name, as podman and docker take it: [HOST[:PORT]/]NAME[:TAG][@DIGEST]
IMAGE_NAME = re.compile(
    r"^(?:(?:[A-Za-z0-9.-]+(?::\d{1,5})?)/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
ENGINES = {"containers-storage:": "podman", "docker-daemon:": "docker"}
REGISTRY_REF = re.compile(
    r"^(?P<host>(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?)/"
    r"(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+|__)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+|__)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class Target:
    given: str  # as the user wrote it (reports repeat it)
    kind: str  # docker-archive | oci-archive | oci | docker | dockerfile | archive (sniffed later)
    path: str = ""
    tag: str | None = None
    host: str = ""
    repo: str = ""
    reference: str = ""  # tag or digest, for a registry
    engine: str = ""  # for a local image (kind "local"): podman, docker, or "" for whichever has it


def parse_target(given: str) -> Target:
    if given.startswith("docker://"):
        match = REGISTRY_REF.match(given.removeprefix("docker://"))
        if not match:
            raise AuditUsageError(f"{given!r} is not docker://HOST[:PORT]/REPO[:TAG|@DIGEST]")
        reference = match.group("digest") or match.group("tag") or "latest"
        return Target(given, "docker", host=match.group("host"), repo=match.group("repo"), reference=reference)
    if given.startswith("dockerfile:"):
        return Target(given, "dockerfile", path=_existing(given.removeprefix("dockerfile:"), given))
    if given.startswith(("docker-archive:", "oci-archive:")):
        kind, _, path = given.partition(":")
        return Target(given, kind, path=_existing(path, given))
    if given.startswith("oci:"):
        path, tag = _split_tag(given.removeprefix("oci:"))
        return Target(given, "oci", path=_existing(path, given), tag=tag)
    for prefix, engine in ENGINES.items():
        if given.startswith(prefix):
            name = given.removeprefix(prefix)
            if not IMAGE_NAME.match(name):
                raise AuditUsageError(f"{given!r}: {name!r} is not an image name")
            return Target(given, "local", path=name, engine=engine)
    if not given or "://" in given:
        raise AuditUsageError(
            f"{given!r} is not a target: use docker-archive:, oci-archive:, oci:, docker:// or a path"
        )
    if not os.path.lexists(given) and not given.startswith(("/", ".")) and IMAGE_NAME.match(given):
        return Target(given, "local", path=given)  # no such path: an image in podman's or docker's store?
    path = _existing(given, given)
    name = os.path.basename(path.rstrip("/"))
    if name in ("Dockerfile", "Containerfile") or name.endswith((".Dockerfile", ".Containerfile")):
        return Target(given, "dockerfile", path=path)
    if os.path.isdir(path):
        return Target(given, "oci", path=path)
    return Target(given, "archive", path=path)


def _split_tag(text: str) -> tuple[str, str | None]:
    """`DIR:TAG`, where DIR itself may hold a colon: the tag is what follows the last one, if DIR exists."""
    if ":" in text and not os.path.exists(text):
        path, _, tag = text.rpartition(":")
        if path and tag:
            return path, tag
    return text, None


def _existing(path: str, given: str) -> str:
    if not path:
        raise AuditUsageError(f"{given!r} names no path")
    if not os.path.lexists(path):
        raise NoInputError(f"{path}: no such file or directory")
    if not os.access(path, os.R_OK):
        raise NoInputError(f"{path}: not readable")
    return path
