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
    "sources.openbao": {"delivery", "supervisor", "launch", "cli", "run", "config", "sources.proxy"},
    "sources.openbao_client": {"delivery", "supervisor", "launch", "cli", "run", "config", "sources.openbao"},
    "sources.openbao_auth": {"delivery", "supervisor", "launch", "cli", "run", "config", "sources.openbao"},
    "sources.answers": {"delivery", "supervisor", "launch", "cli", "run", "config", "sources.proxy"},
    "sources.combined": {"delivery", "supervisor", "launch", "cli", "run", "config"},
    "sources.aws.sigv4": {"delivery", "supervisor", "launch", "cli", "run", "config", "sources", "transport", "log"},
    "sources.aws.client": {"delivery", "supervisor", "launch", "cli", "run", "config", "sources.aws.source"},
    "sources.aws.identity": {"delivery", "supervisor", "launch", "cli", "run", "sources.aws.source"},
    "sources.aws.source": {"delivery", "supervisor", "launch", "cli", "run", "config", "sources.aws.wiring"},
    "settings.aws_references": {"config", "sources", "delivery", "cli"},
    "ledger": {"sources", "delivery", "supervisor", "cli", "refresh", "schedule"},
    "plan": {"sources", "delivery.TokenDirectory", "supervisor", "cli", "refresh", "run", "sidecar", "check"},
    "lifecycle": {"supervisor", "cli", "run", "sidecar", "check"},
    "transport": {"delivery", "supervisor", "launch", "cli", "sources"},
    "refresh": {"sources", "delivery", "supervisor", "cli"},
    "schedule": {"sources", "delivery", "supervisor", "cli", "refresh"},
    "references": {"config", "sources", "delivery", "cli"},
    "errors": {"log", "references", "config", "sources", "delivery", "cli"},
    "masking": {"references", "sources", "delivery", "refresh", "config", "cli"},
    "users": {"references", "sources", "delivery", "refresh", "config", "cli"},
    "prctl": {"references", "sources", "delivery", "refresh", "config", "cli"},
}


# The modes: each is reached from cli alone and shares code through lifecycle, never through another mode.
MODES = ("run", "sidecar", "check", "devproxy", "audit.main")


def _type_only(tree: ast.Module) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:`: imports for annotations, never executed."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                skipped.update(id(inner) for inner in ast.walk(child))
    return skipped


def imported_modules(path: Path) -> set[str]:
    """Every injector.* module named in an import anywhere in the file, type-only imports aside."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    type_only = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
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
    assert "sources.answers" in imported_modules(module_path("sources.proxy"))
    assert "transport" in imported_modules(module_path("sources.wiring"))


def test_modes_never_import_each_other() -> None:
    for mode in MODES:
        imported = imported_modules(module_path(mode))
        others = {m for m in imported for other in MODES if other != mode and (m == other or m.startswith(other + "."))}
        assert not others, f"{mode} imports the mode(s) {sorted(others)}: share through lifecycle instead"


def test_type_only_imports_are_not_dependencies(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "TYPE_CHECKING = False\n"
        "if TYPE_CHECKING:\n    from injector.sources import Source\n"
        "from injector.log import log\n"
    )
    assert imported_modules(sample) == {"log", "log.log"}


def test_source_wiring_lives_with_the_sources() -> None:
    """Settings become a source in sources/wiring.py alone: no mode builds one itself."""
    for path in PACKAGE.rglob("*.py"):
        if "sources" in path.parts or path.name == "lifecycle.py":
            continue
        imported = imported_modules(path)
        assert not {"sources.proxy", "sources.openbao", "sources.wiring"} & imported, path


def test_bench_never_reaches_into_tests() -> None:
    """What the benchmarks share with the tests lives in testkit/; bench/ reads nothing under tests/."""
    bench = PACKAGE.parent / "bench"
    for path in bench.glob("*.py"):
        text = path.read_text()
        assert '"tests"' not in text and "import test_" not in text and "from test_" not in text, path
