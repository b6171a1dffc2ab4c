"""Render templates into --dir (docs/templates.md): the filters, and the files kept fresh.

A rendered file is written like a `_FILE` token, by `TokenDirectory.write`:
through the directory's descriptor, to a temporary file renamed into
place, 0400 (0440 with --file-group), owned by the child's user, so a
reader never sees half a file.  On a rotation only the templates that use a
rotated value are rendered again, and a render equal to what is in place is
not written (no new inode, no new mtime for a watcher to act on).  A
re-render runs in the refresher's on_rotated, under its delivery lock, so
stopping waits for it and the clean-up never races a write.

Imported only when a template is given.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence

from injector.errors import ConfigError, StrongholdError
from injector.log import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.delivery.tokendir import TokenDirectory
    from injector.settings.templates import Template

MAX_RENDERED_BYTES = 4 * 1024 * 1024  # 10,000 placeholders of a large value must not fill the tmpfs (memory)
# All templates together: 100 templates of 4 MiB each would put 400 MiB on tmpfs (memory) and as much in ours.
MAX_TOTAL_RENDERED_BYTES = 16 * 1024 * 1024


def as_json(value: str) -> str:
    """A JSON string, quotes included (non-ASCII kept as it is: the file is UTF-8)."""
    import json

    return json.dumps(value, ensure_ascii=False)


# YAML's short escapes; everything else that is not printable in YAML 1.1 (PyYAML) or 1.2
# is written \xXX or \uXXXX.  Line breaks (\n, NEL, LS, PS) are escaped, never
# written: a double-quoted scalar folds a real line break into a space.
_YAML_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\0": "\\0",
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
}


# Every character a double-quoted scalar cannot hold as it is, and what is written instead:
# `"`, `\` and all that is not printable in YAML 1.1 or 1.2 (C0, DEL, C1 with NEL, LS, PS,
# surrogates, the BOM, U+FFFE and U+FFFF; everything above U+FFFF is printable).  One
# str.translate, not a loop per character: 4 MiB took 0.75 s that way, and stop() waits for a
# render in flight.
_UNPRINTABLE = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0xD800, 0xE000), 0xFEFF, 0xFFFE, 0xFFFF]
_YAML_TABLE = {
    code: _YAML_ESCAPES.get(chr(code)) or (f"\\x{code:02X}" if code <= 0xFF else f"\\u{code:04X}")
    for code in [ord('"'), ord("\\"), *_UNPRINTABLE]
}


def as_yaml(value: str) -> str:
    """A double-quoted YAML scalar."""
    return '"' + value.translate(_YAML_TABLE) + '"'


def as_shell(value: str) -> str:
    """One single-quoted POSIX shell word: inside '...' nothing is special but ' itself."""
    return "'" + value.replace("'", "'\\''") + "'"


def as_url(value: str) -> str:
    """Percent-encoded UTF-8; only RFC 3986's unreserved characters (A-Z a-z 0-9 - . _ ~) kept."""
    from urllib.parse import quote

    return quote(value, safe="")


def as_base64(value: str) -> str:
    """Standard base64 (RFC 4648 section 4, with padding) of the value's UTF-8 bytes."""
    import binascii

    return binascii.b2a_base64(value.encode("utf-8"), newline=False).decode("ascii")


FILTER_FUNCTIONS: dict[str | None, Callable[[str], str]] = {
    None: lambda value: value,
    "json": as_json,
    "yaml": as_yaml,
    "shell": as_shell,
    "url": as_url,
    "base64": as_base64,
}


def render(template: Template, values: Mapping[str, str]) -> bytes:
    """The file's bytes.  A value is never parsed as a template: `{{` in a value stays as it is."""
    out: list[str] = []
    size = 0
    placeholders = iter(template.names)
    for piece in template.pieces:
        text = piece if isinstance(piece, str) else FILTER_FUNCTIONS[piece.filter](values[next(placeholders)])
        size += len(text)  # characters: a lower bound of the bytes, checked again below
        if size > MAX_RENDERED_BYTES:
            break
        out.append(text)
    data = "".join(out).encode("utf-8") if size <= MAX_RENDERED_BYTES else b""
    if size > MAX_RENDERED_BYTES or len(data) > MAX_RENDERED_BYTES:
        raise ConfigError(f"template {template.src} renders to more than 4 MiB; refusing to write {template.dest}")
    return data


class TemplateFiles:
    """The rendered templates in --dir, and what each holds now.

    The bytes in place are kept (not a digest: hashlib would load OpenSSL's libcrypto, ~14 ms,
    and the values are in this process's memory anyway) to tell an unchanged render.
    """

    def __init__(self, templates: Sequence[Template], directory: TokenDirectory) -> None:
        self.templates = list(templates)
        self.directory = directory
        self._written: dict[str, bytes] = {}  # DEST -> the bytes in place

    def write_all(self, values: Mapping[str, str]) -> None:
        """Render and write every template (at start: any error is fatal, 78 naming SRC)."""
        for template in self.templates:
            self._write(template, render(template, values))

    def rotated(self, values: Mapping[str, str], names: Iterable[str]) -> list[str]:
        """Render again the templates that use one of `names`; -> the DESTs rewritten.

        A template that fails (a render over the limit, a full tmpfs) keeps its previous file and
        is logged; the others are still written.
        """
        changed = set(names)
        written = []
        for template in self.templates:
            if changed.isdisjoint(template.names):
                continue
            try:
                data = render(template, values)
                if data == self._written.get(template.dest):
                    continue  # the same bytes: not rewritten
                self._write(template, data)
            except StrongholdError as exc:
                log.error(f"template not rendered again, keeping the previous file: {exc.message}")
                continue
            written.append(template.dest)
        if written:
            log.info("templates rendered again", files=",".join(written))
        return written

    def _write(self, template: Template, data: bytes) -> None:
        others = sum(len(held) for dest, held in self._written.items() if dest != template.dest)
        if others + len(data) > MAX_TOTAL_RENDERED_BYTES:
            raise ConfigError(
                f"template {template.src}: the rendered templates would hold more than 16 MiB together; "
                f"refusing to write {template.dest}"
            )
        self._refuse_symlink(template)
        self.directory.write(template.dest, data)
        self._written[template.dest] = data

    def _refuse_symlink(self, template: Template) -> None:
        """A symlink at DEST is refused rather than silently replaced: someone put it there.

        (The write itself is safe either way: a rename replaces a link, it never follows it.)
        """
        try:
            info = os.stat(template.dest, dir_fd=self.directory.fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ConfigError(f"template {template.src}: cannot check {template.dest} ({exc.strerror})") from None
        if stat.S_ISLNK(info.st_mode):
            path = os.path.join(self.directory.path, template.dest)
            raise ConfigError(f"template {template.src}: {path} is a symlink; refusing to write through or over it")
