"""The environment as the user gave it, before Python's locale coercion changed it.

Read once by the plan, so the child gets exactly what stronghold-init was started with.
"""

from __future__ import annotations

# What Python's C-locale coercion (PEP 538) puts in LC_CTYPE when the locale is C or POSIX.
COERCION_TARGETS = ("C.UTF-8", "C.utf8", "UTF-8")


def undo_locale_coercion(environ: dict[str, str], initial_environ: str = "/proc/self/environ") -> None:
    """Remove the LC_CTYPE Python added at start-up, so the child gets the environment exactly as given.

    The interpreter sets LC_CTYPE=C.UTF-8 in its own environment when started
    under the C locale; the kernel's copy of the environment we were started
    with (/proc/self/environ) shows whether it was really given.
    """
    if environ.get("LC_CTYPE") not in COERCION_TARGETS or "LC_ALL" in environ:
        return
    try:
        with open(initial_environ, "rb") as handle:
            given = handle.read().split(b"\0")
    except OSError:
        return
    if not any(entry.startswith(b"LC_CTYPE=") for entry in given):
        del environ["LC_CTYPE"]
