"""The one-way data flow of docs/architecture.md, enforced by walking imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "injector"

# The concerns of docs/architecture.md: a package (or a top-level module) -> the modules and packages of
# injector/ it may import, at any depth of its files (type-only imports aside).  A name allows itself and
# everything below it.  What is not listed is refused: process/ knows no token (no settings.references,
# sources, delivery or refresh), sources/ never write files (no delivery), nothing below modes/ imports a mode.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "log": set(),
    "netaddr": set(),
    "serving": {"errors", "log", "netaddr"},
    "settings": {"errors", "log", "netaddr", "process.signal_names"},
    "process": {"errors", "log"},
    "sources": {"errors", "log", "netaddr", "settings.references", "settings.aws_references", "settings.settings"},
    "refresh": {"errors", "log", "settings.references"},
    "delivery": {"errors", "log", "settings"},
    "devproxy": {"errors", "log", "netaddr", "serving", "settings.options"},
    "audit": {"errors", "log", "netaddr"},
    "modes": {"errors", "log", "netaddr", "serving", "settings", "process", "sources", "refresh", "delivery", "audit"},
}
CONCERNS = ("settings", "process", "sources", "refresh", "delivery", "modes", "audit")


def concern_of(module: str) -> str:
    """The package (or top-level module) a dotted name under injector/ belongs to."""
    return module.split(".")[0]


# The modes: each is reached from cli alone and shares code through lifecycle, never through another mode.
MODES = ("modes.run", "modes.sidecar", "modes.check", "devproxy", "audit.main")


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
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        concern = concern_of(module)
        if concern in ("cli", "__main__", "__init__"):
            continue  # cli wires everything together; __main__ runs it
        assert concern in ALLOWED, f"{module}: a new concern; give it a row in ALLOWED (and docs/architecture.md)"
        allowed = ALLOWED[concern] | {concern, ""}
        bad = {
            m
            for m in imported_modules(path)
            if concern_of(m) != concern and not any(m == a or m.startswith(a + ".") for a in allowed)
        }
        # `from injector import __version__` names the top package itself
        bad.discard("__version__")
        assert not bad, f"{module} ({concern}/) imports {sorted(bad)}"


def test_every_package_init_is_empty() -> None:
    """Start-up depends on lazy imports: an __init__.py that imports (or defines) anything is paid by every start."""
    for path in PACKAGE.rglob("__init__.py"):
        if path.parent == PACKAGE:
            continue  # injector/__init__.py holds __version__ only
        tree = ast.parse(path.read_text())
        code = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        assert not code, f"{path.relative_to(PACKAGE.parent)} has code; keep package __init__ files empty"


def test_the_rules_refuse_what_they_should() -> None:
    """The table can fail: process/ importing a source, or sources/ importing delivery, is refused."""
    refused = (("process", "sources.wiring"), ("sources", "delivery.tokendir"), ("refresh", "modes.run"))
    for concern, imported in refused:
        allowed = ALLOWED[concern] | {concern}
        assert not any(imported == a or imported.startswith(a + ".") for a in allowed)


def test_the_walker_sees_imports() -> None:
    assert "errors" in imported_modules(module_path("process.supervisor"))
    assert "sources.answers" in imported_modules(module_path("sources.proxy"))
    assert "sources.transport" in imported_modules(module_path("sources.wiring"))


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
        assert not {"sources.proxy", "sources.openbao.source", "sources.wiring"} & imported, path


def test_bench_never_reaches_into_tests() -> None:
    """What the benchmarks share with the tests lives in testkit/; bench/ reads nothing under tests/."""
    bench = PACKAGE.parent / "bench"
    for path in bench.glob("*.py"):
        text = path.read_text()
        assert '"tests"' not in text and "import test_" not in text and "from test_" not in text, path
