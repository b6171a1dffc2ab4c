"""Parse `--template SRC:DEST` and the templates themselves (docs/templates.md).  Pure apart
from reading the SRC files the user named.

    SRC:DEST             SRC a text file (UTF-8, at most 1 MiB), DEST a plain name inside --dir
    {{ REFERENCE }}      the reference's value as it is
    {{ REF | FILTER }}   through one filter: json, yaml, shell, url, base64
    \\{{                  a literal {{

Each template is parsed once, at start, before anything is asked for: every
placeholder's reference becomes a `Reference` that joins the one resolution
of the environment's references (one request, one refresh schedule), so a
typo fails before the command starts, naming SRC and the line.  A placeholder
whose reference equals a variable's (`DB_FILE=stronghold://db` and
`{{ stronghold://db }}`) shares that variable's credential: the file and the
template hold the same value.  A reference used only by templates is named
`SRC:LINE:COLUMN` (where it first appears) on the wire and in every message.

Imported only when a template is given: a start without one pays nothing.
"""

from __future__ import annotations

import os
import stat
from collections import namedtuple
from collections.abc import Iterable, Sequence

from injector.errors import ConfigError
from injector.settings.references import (
    MAX_FILE_NAME,
    SCHEMES,
    Reference,
    is_reference,
    misspelt_scheme,
    parse_reference,
)

FILTERS = ("json", "yaml", "shell", "url", "base64")  # rendered by injector/delivery/templates.py
MAX_TEMPLATE_BYTES = 1024 * 1024  # SPEC 13: at most 1 MiB of UTF-8 text
MAX_PLACEHOLDERS = 10_000  # per template: a config file has tens; a bound keeps a hostile one cheap
MAX_TEMPLATES = 100
MAX_TEMPLATE_REFERENCES = 1_000  # distinct references over all templates: each is an item in one request
MAX_REFERENCE = 4096  # characters in one placeholder's reference (an error may quote part of it)
MAX_REASON = 200  # characters of a reference error's reason shown after SRC and line
# DEST is a file name in --dir, like a _FILE token's: no separator, nothing hidden (.ready lives there).
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_NAME_REST = _NAME_START | frozenset(".-")


class Placeholder(namedtuple("Placeholder", "reference filter line column")):
    """One `{{ ... }}`: the reference as written, its filter (None: the value as it is), where it starts."""

    __slots__ = ()


class Template(namedtuple("Template", "src dest pieces names", defaults=((),))):
    """A parsed template.

    src: the path as given; dest: the file name inside --dir;
    pieces: literal strings and Placeholders, in order;
    names: the name of the Reference each Placeholder's value comes from, in the same order
    (filled by `resolve_references`)
    """

    __slots__ = ()

    @property
    def placeholders(self) -> list[Placeholder]:
        return [piece for piece in self.pieces if isinstance(piece, Placeholder)]


def split_spec(text: str) -> tuple[str, str]:
    """`SRC:DEST` -> (SRC, DEST).  DEST holds no colon, so the last one splits (SRC may hold one)."""
    src, colon, dest = text.rpartition(":")
    if not colon or not src or not dest:
        raise ConfigError(f"--template {text!r}: write SRC:DEST, e.g. /app/config.json.tmpl:config.json")
    if not (dest[0] in _NAME_START and all(c in _NAME_REST for c in dest)) or len(dest) > MAX_FILE_NAME:
        raise ConfigError(
            f"--template {src}: DEST {dest!r} must be a plain file name inside --dir "
            f"(A-Z a-z 0-9 _ . -, not starting with . or -, at most {MAX_FILE_NAME} characters), not a path"
        )
    return src, dest


def parse_template(text: str, src: str, dest: str) -> Template:
    """Split `text` into literals and placeholders; every error names SRC, the line and the column.

    Linear in the length of `text` (every search is bounded by the placeholder's own end).
    """
    pieces: list[str | Placeholder] = []
    literal: list[str] = []
    position = 0
    # Where the last placeholder was, counted on from there: each stretch of text is looked at once.
    line, counted_to, last_newline = 1, 0, -1

    def where(offset: int) -> tuple[int, int]:
        nonlocal line, counted_to, last_newline
        line += text.count("\n", counted_to, offset)
        newline = text.rfind("\n", counted_to, offset)
        if newline >= 0:
            last_newline = newline
        counted_to = offset
        return line, offset - last_newline  # the column, from 1

    count = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            literal.append(text[position:])
            break
        if start > 0 and text[start - 1] == "\\":  # \{{ : a literal {{
            literal.append(text[position : start - 1])
            literal.append("{{")
            position = start + 2
            continue
        literal.append(text[position:start])
        at_line, at_column = where(start)
        prefix = f"template {src} line {at_line}, column {at_column}"
        end = text.find("}}", start + 2)
        if end < 0 or text.find("\n", start + 2, end) >= 0:
            raise ConfigError(
                f"{prefix}: unclosed {{{{ (a placeholder ends with }}}} on the same line; "
                "write \\{{ for a literal {{)"
            )
        count += 1
        if count > MAX_PLACEHOLDERS:
            raise ConfigError(f"template {src}: more than {MAX_PLACEHOLDERS} placeholders")
        if literal:
            pieces.append("".join(literal))
            literal = []
        pieces.append(_placeholder(text[start + 2 : end], prefix, at_line, at_column))
        position = end + 2
    if literal and literal != [""]:
        pieces.append("".join(literal))
    return Template(src=src, dest=dest, pieces=tuple(p for p in pieces if p != ""))


def _placeholder(inner: str, prefix: str, line: int, column: int) -> Placeholder:
    """The inside of one `{{ ... }}`.  Never echoes it: a template may hold anything."""
    reference, bar, filter_text = inner.partition("|")
    reference = reference.strip()
    if not reference:
        raise ConfigError(f"{prefix}: empty placeholder (write {{{{ REFERENCE }}}} or {{{{ REFERENCE | FILTER }}}})")
    if len(reference) > MAX_REFERENCE:
        raise ConfigError(f"{prefix}: the placeholder is longer than {MAX_REFERENCE} characters")
    name = None
    if bar:
        name = filter_text.strip()
        if "|" in name:
            raise ConfigError(f"{prefix}: one filter only ({', '.join(FILTERS)})")
        if name not in FILTERS:
            plain = name.replace("_", "").replace("-", "")
            shown = f" {name!r}" if plain.isascii() and plain.isalnum() and len(name) <= 32 else ""
            raise ConfigError(f"{prefix}: unknown filter{shown} (known: {', '.join(FILTERS)})")
    if not is_reference(reference):
        if reference.startswith("{"):
            raise ConfigError(f"{prefix}: {{{{{{ starts a placeholder with {{; write \\{{{{ for a literal {{{{")
        meant = misspelt_scheme(reference)
        if meant is not None:
            scheme = reference[: reference.index(":") + 1]
            raise ConfigError(f"{prefix}: {scheme!r}... looks like a misspelt reference; write {meant}...")
        raise ConfigError(
            f"{prefix}: the placeholder holds no reference (one of {', '.join(SCHEMES)}); "
            "write \\{{ for a literal {{"
        )
    return Placeholder(reference=reference, filter=name, line=line, column=column)


def read_template(src: str) -> str:
    """SRC's text: a regular file (symlinks followed: a Kubernetes ConfigMap is one), UTF-8, at most 1 MiB.

    Opened without blocking (a FIFO in its place must not hang the start) and read with a bound.
    """
    try:
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"template {src}: cannot open it ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"template {src} is not a regular file")
        if info.st_size > MAX_TEMPLATE_BYTES:
            raise ConfigError(f"template {src} is larger than 1 MiB")
        chunks, size = [], 0
        while size <= MAX_TEMPLATE_BYTES:
            chunk = os.read(fd, MAX_TEMPLATE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"template {src}: cannot read it ({exc.strerror})") from None
    finally:
        os.close(fd)
    if size > MAX_TEMPLATE_BYTES:  # it grew while we read it
        raise ConfigError(f"template {src} is larger than 1 MiB")
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"template {src} line {line}: not UTF-8 text (byte {exc.start + 1} is invalid)") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ConfigError(f"template {src} line {line}: holds a NUL byte, so it is not a text file")
    return text


def load_templates(specs: Sequence[str], references: Sequence[Reference]) -> tuple[list[Template], list[Reference]]:
    """Read and parse every `SRC:DEST`; -> (templates, the references only templates use).

    `references` are the environment's: a DEST may not be one of their files, and a placeholder
    equal to one of them shares its credential.
    """
    if len(specs) > MAX_TEMPLATES:
        raise ConfigError(f"more than {MAX_TEMPLATES} templates")
    files = {reference.target: reference.name for reference in references if reference.is_file}
    templates: list[Template] = []
    seen: dict[str, str] = {}
    for spec in specs:
        src, dest = split_spec(spec)
        if dest in seen:
            raise ConfigError(f"--template {src}: DEST {dest} is also the DEST of {seen[dest]}")
        if dest in files:
            raise ConfigError(f"--template {src}: DEST {dest} is also the file of {files[dest]}")
        seen[dest] = src
        templates.append(parse_template(read_template(src), src, dest))
    return resolve_references(templates, references)


def resolve_references(
    templates: Iterable[Template], references: Sequence[Reference]
) -> tuple[list[Template], list[Reference]]:
    """Each placeholder's Reference: a variable's when equal to it, else one per distinct reference text."""
    declared = {_key(reference): reference.name for reference in references}
    taken = {reference.name for reference in references}
    by_text: dict[str, str] = {}  # reference as written -> the name it is issued under
    own: list[Reference] = []
    resolved = []
    for template in templates:
        names = []
        if not template.placeholders:
            raise ConfigError(
                f"template {template.src} holds no {{{{ REFERENCE }}}}: nothing to fill in (copy it instead)"
            )
        for placeholder in template.placeholders:
            name = by_text.get(placeholder.reference)
            if name is None:
                name = f"{template.src}:{placeholder.line}:{placeholder.column}"
                try:
                    reference = parse_reference(name, placeholder.reference)
                except ConfigError as exc:
                    reason = exc.message.removeprefix(f"{name}: ")
                    if len(reason) > MAX_REASON:
                        reason = reason[: MAX_REASON - 1] + "…"
                    raise ConfigError(
                        f"template {template.src} line {placeholder.line}, column {placeholder.column}: {reason}"
                    ) from None
                shared = declared.get(_key(reference))
                if shared is not None:
                    name = shared
                else:
                    if name in taken:  # a variable named like our name: absurd, but never merge the two
                        raise ConfigError(f"template {template.src}: the variable {name} clashes with its name")
                    own.append(reference)
                    taken.add(name)
                    if len(own) > MAX_TEMPLATE_REFERENCES:
                        raise ConfigError(f"templates use more than {MAX_TEMPLATE_REFERENCES} distinct references")
                by_text[placeholder.reference] = name
            names.append(name)
        resolved.append(template._replace(names=tuple(names)))
    return resolved, own


def _key(reference: Reference) -> Reference:
    """What makes two references ask for the same credential: all but the name and where it was set."""
    return reference._replace(name="", origin=None)
