"""The modules of the process model import one way: the API side
(app, delivery_process) never imports the delivery process's entry module
(delivery_main), and delivery_process never imports app, even lazily; read
from the source, so an import inside a function counts too."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = "hookline.server"


def _modules() -> dict[str, Path]:
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([PACKAGE, *parts])] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The hookline.server modules `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            imported.add(module)
            imported.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import notify`
    return imported & modules.keys()


def _imported_by() -> dict[str, set[str]]:
    """Each hookline.server module: the modules that import it."""
    modules = _modules()
    importers: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module in _imports(name, path, modules):
            importers[module].add(name)
    return importers


@pytest.mark.parametrize(
    ("module", "importer"),
    [
        ("hookline.server.app", "hookline.server.delivery_process"),
        ("hookline.server.delivery_main", "hookline.server.app"),
        ("hookline.server.delivery_main", "hookline.server.delivery_process"),
    ],
)
def test_the_process_modules_import_one_way(module: str, importer: str) -> None:
    assert importer not in _imported_by().get(module, set())


def test_nothing_imports_the_module_a_delivery_process_runs() -> None:
    # Run as __main__, it would be loaded a second time by any module importing it.
    assert _imported_by()["hookline.server.delivery_main"] == set()
