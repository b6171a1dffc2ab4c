"""`fetch` (one-shot, for init containers) and `sidecar` (keep files fresh).

Both take `_FILE` references only: there is no child whose environment
could receive a token.
"""

from __future__ import annotations

from injector.errors import ConfigError
from injector.log import log
from injector.run import prepare_directory, write_files
from injector.startup import Plan, issue_all, open_source


def _file_references_only(plan: Plan, mode: str) -> None:
    if plan.env_references:
        names = ", ".join(r.name for r in plan.env_references)
        raise ConfigError(f"{names}: {mode} delivers files only; name the variable NAME_FILE")


def fetch(plan: Plan) -> int:
    """Write every file and <dir>/.ready, leave them in place, exit 0."""
    _file_references_only(plan, "fetch")
    if not plan.references:
        log.warning("no references found; nothing to fetch")
        return 0
    source = open_source(plan.settings)
    directory = prepare_directory(plan)
    assert directory is not None
    try:
        credentials = issue_all(source, plan.references, plan.settings)
        write_files(directory, plan.references, credentials)
        directory.mark_ready()
    except BaseException:
        directory.cleanup()
        raise
    log.info("files written", dir=directory.path, count=len(credentials))
    return 0


def sidecar(plan: Plan) -> int:
    _file_references_only(plan, "sidecar")
    raise ConfigError("sidecar mode is not implemented yet")
