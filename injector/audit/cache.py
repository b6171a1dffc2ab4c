"""`--cache DIR`: each layer's result between runs, keyed by layer digest and rule version.

A second audit of a registry then downloads only the layers it has not seen.
What a file holds is what a report may show: file findings as redacted
prefixes and fingerprints, and hashes of the paths the layer deletes or
replaces (layerscan.py) -- never a value.  Files are mode 0600, written to a
temporary name and renamed (a reader never sees half a file), and read
through the directory's fd without following symlinks.  A file from another
rule version, not ours, writable by others, or malformed is ignored and the
layer scanned again: a cache must never be able to make an image look clean.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import re
import stat

from injector.audit.errors import AuditUsageError
from injector.audit.findings import Finding, fix_for
from injector.audit.layerscan import LayerResult

FORMAT = 1
MAX_ENTRY = 64 * 1024 * 1024  # a layer's hashes of 100k paths are ~1 MiB; refuse to read more
DIGEST_HEX = re.compile(r"^sha256:([0-9a-f]{64})$")
FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")
REDACTED = re.compile(r"^.{0,4}…\(\d{1,9}\)$", re.DOTALL)


def rules_version(strict: bool) -> str:
    """What the detection depends on: our version, the sources that decide, detect-secrets', --strict."""
    from detect_secrets.__version__ import VERSION

    from injector import __version__
    from injector.audit import detect, findings, layers, layerscan

    digest = hashlib.sha256(f"{FORMAT} {__version__} {VERSION} strict={strict}".encode())
    for module in (detect, findings, layers, layerscan):
        try:
            with open(str(module.__file__), "rb") as handle:
                digest.update(handle.read())
        except (OSError, TypeError):  # a bundle without sources: the version alone decides
            digest.update(module.__name__.encode())
    return digest.hexdigest()[:32]


class LayerCache:
    def __init__(self, path: str, rules: str) -> None:
        self.path = path
        self.rules = rules
        self.hits = 0
        self.written = 0
        self.write_failed = ""
        self.fd = _open_dir(path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _name(self, digest: str) -> str | None:
        match = DIGEST_HEX.match(digest)
        return f"{match.group(1)}-{self.rules}.json" if match else None

    def get(self, digest: str) -> LayerResult | None:
        name = self._name(digest)
        if name is None:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=self.fd)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
                return None  # someone else could have written it
            if info.st_size > MAX_ENTRY:
                return None
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read(MAX_ENTRY + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        result = _parse(data, digest, self.rules)
        if result is not None:
            self.hits += 1
        return result

    def put(self, digest: str, result: LayerResult) -> None:
        name = self._name(digest)
        if name is None or self.write_failed:
            return
        entry = {
            "format": FORMAT,
            "rules": self.rules,
            "digest": digest,
            "findings": [
                {"path": f.path, "key": f.key, "rule": f.rule, "redacted": f.redacted, "fingerprint": f.fingerprint}
                for f in result.findings
            ],
            "covers": base64.b64encode(result.covers).decode(),
            "opaque": base64.b64encode(result.opaque).decode(),
        }
        data = json.dumps(entry, ensure_ascii=True).encode()
        temporary = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(
                temporary,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=self.fd,
            )
        except OSError as exc:
            self.write_failed = exc.strerror or "cannot write"
            return
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.close(fd)
            fd = -1
            os.rename(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            self.written += 1
        except OSError as exc:
            self.write_failed = exc.strerror or "cannot write"
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(temporary, dir_fd=self.fd)
            except OSError:
                pass


def _open_dir(path: str) -> int:
    """The cache directory's fd: made 0700 if missing; ours and writable by nobody else, else refused."""
    if not path:
        raise AuditUsageError("--cache needs a directory")
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        try:
            os.mkdir(path, 0o700)
            fd = os.open(path, flags)
        except OSError as exc:
            raise AuditUsageError(f"--cache {path}: cannot create it ({exc.strerror})") from None
    except OSError as exc:
        reason = "a symlink or not a directory" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else exc.strerror
        raise AuditUsageError(f"--cache {path}: {reason}") from None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        os.close(fd)
        raise AuditUsageError(
            f"--cache {path}: must be owned by this user and writable by no one else "
            "(another user could make an image look clean)"
        )
    return fd


def _parse(data: bytes, digest: str, rules: str) -> LayerResult | None:
    """A cache file's result, or None when it is not exactly what this version writes."""
    try:
        entry = json.loads(data)
        if not isinstance(entry, dict) or entry.get("format") != FORMAT:
            return None
        if entry.get("rules") != rules or entry.get("digest") != digest:
            return None
        covers = base64.b64decode(str(entry["covers"]), validate=True)
        opaque = base64.b64decode(str(entry["opaque"]), validate=True)
        if len(covers) % 8 or len(opaque) % 8:
            return None
        found = []
        for item in entry["findings"]:
            path, key, rule = item["path"], item["key"], item["rule"]
            redacted, fingerprint = item["redacted"], item["fingerprint"]
            if not (isinstance(path, str) and path.startswith("/") and isinstance(rule, str) and rule):
                return None
            if key is not None and not isinstance(key, str):
                return None
            if not (isinstance(redacted, str) and REDACTED.match(redacted)):
                return None
            if not (isinstance(fingerprint, str) and FINGERPRINT.match(fingerprint)):
                return None
            found.append(Finding("file", None, path, key, rule, redacted, fingerprint, fix_for("file", key)))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return LayerResult(found, covers, opaque, raw_bytes=0, from_cache=True)
