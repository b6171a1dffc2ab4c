"""The static check of a Dockerfile/Containerfile, parsed with dockerfile-parse.

It flags what would put a credential into the image before it is built:
ENV/ARG holding or named like secrets, COPY/ADD of credential files, RUN
lines with inline tokens or using a secret-named build arg.  Each finding says
the fix: `RUN --mount=type=secret` at build time, a `stronghold://`
reference at run time.
"""

from __future__ import annotations

import io
import re

from injector.audit.detect import Detector, is_dotenv_name, is_known_credential_file, is_secret_name, unquote
from injector.audit.errors import BadImageError, NoInputError
from injector.audit.findings import Finding, fix_for

MAX_DOCKERFILE = 4 * 1024 * 1024
SECRET_MOUNT = re.compile(r"--mount=(?:[^ ]*,)?type=secret")
KEY_FILE = re.compile(r"(?:^|/)(?:id_(?:rsa|dsa|ecdsa|ed25519)|[^/ ]*\.(?:pem|key|p12|pfx|jks|keystore))$", re.I)


def check_dockerfile(path: str, detector: Detector) -> list[Finding]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_DOCKERFILE + 1)
    except FileNotFoundError:
        raise NoInputError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise NoInputError(f"{path}: not readable ({exc.strerror})") from None
    if len(data) > MAX_DOCKERFILE:
        raise BadImageError(f"{path}: larger than {MAX_DOCKERFILE} bytes; not a Dockerfile")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadImageError(f"{path}: not UTF-8 text") from None
    from dockerfile_parse import DockerfileParser  # imported only for a Dockerfile target

    parser = DockerfileParser(fileobj=io.BytesIO(data), env_replace=False)  # our bounded bytes
    try:
        instructions = parser.structure
    except Exception:  # the parser's own errors have no common base class
        raise BadImageError(f"{path}: not a parsable Dockerfile") from None
    del text
    findings: list[Finding] = []
    secret_args: set[str] = set()

    def add(value: str | None, rule: str, key: str | None, fix: str, line: int) -> None:
        """`value` None: the finding is the name `key` itself, reported as the key with no fingerprint."""
        text = fix_for(fix, key)
        if value is None:
            finding = Finding.named(where="dockerfile", rule=rule, path=path, key=key or "", fix=text)
        else:
            finding = Finding.of(value, where="dockerfile", rule=rule, path=path, key=key, fix=text)
        findings.append(finding.moved(context=f"line {line}"))

    for instruction in instructions:
        name = str(instruction.get("instruction", "")).upper()
        value = str(instruction.get("value", ""))
        line = int(instruction.get("startline", 0)) + 1
        if name in ("ENV", "ARG", "LABEL"):
            for key, raw in _pairs(value, name):
                if name == "ARG" and is_secret_name(key):
                    secret_args.add(key)
                hits = list(detector.check_assignment(key, raw)) if raw is not None else []
                for rule, hit_key, found in hits:
                    add(found, rule, hit_key or key, "build-arg" if name == "ARG" else "dockerfile-env", line)
                if name == "ARG" and raw is None and is_secret_name(key):
                    add(None, "secret-named-build-arg", key, "build-arg", line)
        elif name in ("COPY", "ADD"):
            for source in _sources(value):
                base = source.rstrip("/").rsplit("/", 1)[-1]
                if is_known_credential_file(source) or is_dotenv_name(base) or KEY_FILE.search(source):
                    add(None, "credential-file-copied", base, "file", line)
        elif name == "RUN":
            body = SECRET_MOUNT.sub("", value)
            for rule, found_key, found in detector.scan_line(body, filename=""):
                add(found, rule, found_key, "history", line)
            if not SECRET_MOUNT.search(value):
                for arg in sorted(secret_args):
                    if re.search(r"\$\{?" + re.escape(arg) + r"\b", body):
                        add(None, "secret-build-arg-used", arg, "build-arg-used", line)
    return findings


PAIR = re.compile(r"""([A-Za-z_][A-Za-z0-9_.\-]*)(?:=("(?:[^"\\]|\\.)*"|'[^']*'|\S*))?""")


def _pairs(value: str, instruction: str) -> list[tuple[str, str | None]]:
    value = value.strip()
    if instruction != "ARG" and "=" not in value.split(" ", 1)[0]:
        key, _, rest = value.partition(" ")  # the old `ENV KEY value` form
        return [(key, rest.strip())] if key else []
    out = []
    for match in PAIR.finditer(value):
        raw = match.group(2)
        out.append((match.group(1), unquote(raw) if raw is not None else None))
    return out


def _sources(value: str) -> list[str]:
    words = [w for w in value.split() if not w.startswith("--")]
    if value.lstrip().startswith("["):
        import json

        try:
            words = [str(w) for w in json.loads(value)]
        except ValueError:
            pass
    return words[:-1]
