"""The one-way data flow of docs/architecture.md, enforced by walking imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "injector"

# module -> package modules it must never import, at any depth of the file
FORBIDDEN = {
    "supervisor": {"sources", "delivery", "refresh", "references", "config", "cli"},
    "launch": {"sources", "delivery", "refresh", "references", "config", "cli"},
    "sources.proxy": {"delivery", "supervisor", "launch", "cli", "run"},
    "transport": {"delivery", "supervisor", "launch", "cli", "sources"},
    "refresh": {"sources", "delivery", "supervisor", "cli"},
    "schedule": {"sources", "delivery", "supervisor", "cli", "refresh"},
    "references": {"config", "sources", "delivery", "cli"},
    "errors": {"log", "references", "config", "sources", "delivery", "cli"},
    "masking": {"references", "sources", "delivery", "refresh", "config", "cli"},
    "users": {"references", "sources", "delivery", "refresh", "config", "cli"},
    "prctl": {"references", "sources", "delivery", "refresh", "config", "cli"},
}


def imported_modules(path: Path) -> set[str]:
    """Every injector.* module named in an import anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("injector"):
            found.add(node.module.removeprefix("injector").lstrip("."))
            for alias in node.names:
                found.add(f"{node.module.removeprefix('injector').lstrip('.')}.{alias.name}".lstrip("."))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("injector."):
                    found.add(alias.name.removeprefix("injector."))
    return found


def module_path(name: str) -> Path:
    return PACKAGE / (name.replace(".", "/") + ".py")


def test_nothing_imports_cli() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        assert not any(m == "cli" or m.startswith("cli.") for m in imported_modules(path)), path


def test_imports_only_flow_one_way() -> None:
    for module, forbidden in FORBIDDEN.items():
        imported = imported_modules(module_path(module))
        bad = {m for m in imported for f in forbidden if m == f or m.startswith(f + ".")}
        assert not bad, f"{module} imports {sorted(bad)}"


def test_the_walker_sees_imports() -> None:
    assert "errors" in imported_modules(module_path("supervisor"))
    assert "transport" in imported_modules(module_path("sources.proxy"))
