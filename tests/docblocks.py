"""The shell blocks of the documentation, for the tests that run them as written or compare them.

A section is everything from its heading line down to the next heading of the
same or a higher level, so a `##` section holds its `###` subsections.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def section(page: str, heading: str) -> str:
    """The text of section `heading` ("## Name" or "### Name") of `page` (a path from the repository root)."""
    lines = (ROOT / page).read_text().splitlines(keepends=True)
    level = len(heading.split(" ", 1)[0])
    start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == heading)
    fenced = False  # a "# comment" inside a code block is not a heading
    for end in range(start + 1, len(lines)):
        if lines[end].startswith("```"):
            fenced = not fenced
        match = re.match(r"(#+) ", lines[end])
        if not fenced and match and len(match.group(1)) <= level:
            return "".join(lines[start:end])
    return "".join(lines[start:])


def blocks(page: str, heading: str | None = None, language: str = "sh") -> list[str]:
    """The ```sh blocks of `page`, or of one section of it, in order."""
    text = section(page, heading) if heading else (ROOT / page).read_text()
    return re.findall(rf"```{language}\n(.+?)\n```", text, re.S)
