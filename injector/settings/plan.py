"""What the user asked for, resolved before anything is acted on.

    environment (+ --env-file) -> Settings, [Reference]  =  a Plan

Nothing here sends a request, starts a process or a thread; the modes
(run, sidecar, fetch, check) act on a Plan through `lifecycle`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from injector.log import log
from injector.settings.envfiles import check_env_file_switches, load_env_files
from injector.settings.references import Reference, collect_references
from injector.settings.settings import Settings, build_settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from injector.settings.templates import Template


class Plan:
    """What the user asked for, resolved but not yet acted on."""

    def __init__(
        self,
        settings: Settings,
        environ: dict[str, str],
        references: list[Reference],
        templates: list[Template] | None = None,
        template_references: list[Reference] | None = None,
    ) -> None:
        self.settings = settings
        self.environ = environ  # our environment after --env-file, STRONGHOLD_* included
        self.references = references  # the variables' (env and _FILE), in the child's environment
        self.templates = templates or []  # --template, parsed (docs/templates.md)
        # references only templates use: issued and refreshed with the others, never in the environment
        self.template_references = template_references or []

    @property
    def all_references(self) -> list[Reference]:
        """Everything to issue: the variables' references, then the templates' own."""
        return self.references + self.template_references

    @property
    def file_references(self) -> list[Reference]:
        return [r for r in self.references if r.is_file]

    @property
    def env_references(self) -> list[Reference]:
        return [r for r in self.references if not r.is_file]


def make_plan(options: Mapping[str, object], env_files: Sequence[str]) -> Plan:
    environ = dict(os.environ)
    from injector.settings.startenv import undo_locale_coercion

    undo_locale_coercion(environ)
    # Logging is configured first from flags and environment alone, so that
    # errors in the env files are already logged the way the user asked.
    configure_logging(build_settings(options, environ))
    origins = load_env_files(list(env_files), environ)
    check_env_file_switches(origins)
    settings = build_settings(options, environ)
    settings.env_origins = origins
    configure_logging(settings)
    references = collect_references(environ, origins)
    if not settings.templates:
        return Plan(settings=settings, environ=environ, references=references)
    from injector.settings.templates import load_templates  # only with --template: no cost otherwise

    templates, template_references = load_templates(settings.templates, references)
    return Plan(settings, environ, references, templates, template_references)


def configure_logging(settings: Settings) -> None:
    log.configure(level=settings.log_level, fmt=settings.log_format)
