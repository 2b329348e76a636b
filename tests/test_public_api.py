"""``dosirak``'s public names: each in ``__all__``, each found at run time (lazily) and by a type
checker (``mypy`` reads the ``TYPE_CHECKING`` block of ``dosirak/__init__.py``)."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import dosirak

ROOT = Path(__file__).resolve().parents[1]
INIT = ROOT / "src" / "dosirak" / "__init__.py"


def _bound_names(tree: ast.Module, *, type_checking: bool) -> set[str]:
    """Names bound by imports at module level (outside or inside ``if TYPE_CHECKING``)."""
    names: set[str] = set()
    for node in tree.body:
        body: list[ast.stmt] = []
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            body = node.body if type_checking else []
        elif not type_checking:
            body = [node]
        for statement in body:
            if isinstance(statement, (ast.Import, ast.ImportFrom)):
                names |= {alias.asname or alias.name for alias in statement.names}
    return names


def test_all_names_every_public_name_and_each_one_resolves() -> None:
    lazy = set(dosirak._SUBMODULES) | set(dosirak._ATTRIBUTES)
    assert set(dosirak.__all__) == lazy | {"Tag", "__version__"}
    assert len(dosirak.__all__) == len(set(dosirak.__all__))
    for name in dosirak._SUBMODULES:  # found without importing the frameworks
        assert importlib.util.find_spec(f"dosirak.{name}") is not None, name
    for name, module in dosirak._ATTRIBUTES.items():
        assert hasattr(importlib.import_module(module), name), name


def test_a_type_checker_sees_each_name_of_all() -> None:
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    seen = _bound_names(tree, type_checking=True) | _bound_names(tree, type_checking=False)
    assert set(dosirak.__all__) <= seen, sorted(set(dosirak.__all__) - seen)


def test_mypy_resolves_the_public_names(tmp_path: Path) -> None:
    uses = tmp_path / "uses.py"
    uses.write_text("import dosirak\n\n" + "".join(
        f"reveal_type(dosirak.{name})\n" for name in dosirak.__all__), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(ROOT / ".mypy_cache"), "--follow-imports", "silent", str(uses)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert not errors, "\n".join(errors)
    revealed = done.stdout
    for name in ("Runner", "Service", "io", "Model", "api", "SyncHTTPClient"):
        assert f"uses.py:{dosirak.__all__.index(name) + 3}: note: Revealed type is" in revealed
    assert '"Any"' not in revealed, revealed  # every name has its real type
