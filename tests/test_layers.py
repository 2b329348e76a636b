"""ARCHITECTURE.md's layer table, checked against every import in ``src/dosirak`` (by ``ast``).

Each row of the table names modules (``cli/`` is a package, ``deploy/entrypoint.py`` one file;
the longest name that fits a file is its place) and the rows it imports. The test reads every
``import`` of dosirak's own modules, at module level, inside functions or under
``TYPE_CHECKING`` alike, and checks that:

- every file of the package has a row;
- every import points down the table: to a later row (or within its own package or file), and
  two modules of one row never import each other; so there is no circle;
- a row's ``imports`` column names exactly the modules it imports (or says "any row below"),
  besides the foundation row at the bottom that everything may use;
- there are no exceptions: the table has no column for arrows that point up, and a lazy import
  inside a function is held to the same rule as one at module level. (A name a lower module
  shows but a higher layer makes is found through ``dosirak.faces``, filled in by
  ``dosirak/__init__.py``; see tests/test_faces.py.)
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "dosirak"
TABLE_TITLE = "## Layers"
COLUMNS = ["modules", "what", "imports"]


@dataclass
class Row:
    index: int
    names: list[str]
    imports: set[str]
    foundation: bool = False
    text: str = ""


@dataclass(frozen=True)
class Import:
    source: str  # file, relative to the package: "bentos/build.py"
    target: str  # the module file it imports: "models.py", "server/app.py"
    line: int
    lazy: bool  # inside a function


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _named(cell: str) -> set[str]:
    """The modules a cell names (in backquotes), leaving out what it says in parentheses."""
    return set(re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", cell)))


def read_table() -> list[Row]:
    """The rows of ARCHITECTURE.md's layer table, top first."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split(TABLE_TITLE, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.lower() for cell in _cells(lines[0])]
    assert header == COLUMNS, (f"ARCHITECTURE.md layer table: the columns are {COLUMNS}, got "
                               f"{header} (no column may hold arrows that point up)")
    modules, imports = header.index("modules"), header.index("imports")
    rows = []
    for number, line in enumerate(lines[2:]):
        cells = _cells(line)
        assert len(cells) == len(COLUMNS), f"ARCHITECTURE.md layer table: row {line!r}"
        names = re.findall(r"`([^`]+)`", cells[modules])
        assert names, f"ARCHITECTURE.md layer table: row {line!r} names no modules"
        rows.append(Row(number, names, _named(cells[imports]),
                        foundation="foundation" in cells[imports].lower(),
                        text=cells[imports].lower()))
    return rows


def module_file(module: str) -> str | None:
    """The file (relative to the package) of a dosirak module name, or None if there is none."""
    parts = module.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    if path.is_dir() and (path / "__init__.py").is_file():
        return "/".join([*parts, "__init__.py"])
    if path.with_suffix(".py").is_file():
        return "/".join(parts) + ".py"
    return None


def _in_type_checking_or_function(tree: ast.AST) -> dict[int, bool]:
    """For each import node (by id): whether it sits inside a function."""
    lazy: dict[int, bool] = {}

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                lazy[id(child)] = in_function
            visit(child, inside)

    visit(tree, False)
    return lazy


def read_imports() -> list[Import]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.relative_to(PACKAGE).as_posix()
        if "migrations/versions/" in source or "__pycache__" in source:
            continue  # Alembic revisions: data run by Alembic, never imported by dosirak
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        lazy = _in_type_checking_or_function(tree)
        package = source.rsplit("/", 1)[0].replace("/", ".") if "/" in source else ""
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ["dosirak", *[p for p in package.split(".") if p]]
                    base = base[:len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                # ``from dosirak.x import y``: y may be a module of its own
                targets = [f"{module}.{alias.name}" if module_file(f"{module}.{alias.name}")
                           else module for alias in node.names]
            for target in targets:
                if target == "dosirak" or target.startswith("dosirak."):
                    file = module_file(target) or module_file(target.rsplit(".", 1)[0])
                    if file is not None:
                        found.append(Import(source, file, node.lineno, lazy[id(node)]))
    return found


def place(file: str, rows: list[Row]) -> tuple[Row, str] | None:
    """The row and the table name that hold ``file`` (the longest name that fits)."""
    best: tuple[Row, str] | None = None
    for row in rows:
        for name in row.names:
            fits = file == name if not name.endswith("/") else file.startswith(name)
            if fits and (best is None or len(name) > len(best[1])):
                best = (row, name)
    return best


@pytest.fixture(scope="module")
def table() -> list[Row]:
    return read_table()


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return read_imports()


def test_every_file_of_the_package_has_a_row(table: list[Row]) -> None:
    missing = sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
                     if "__pycache__" not in path.parts
                     and place(path.relative_to(PACKAGE).as_posix(), table) is None)
    assert not missing, (f"add these to a row of ARCHITECTURE.md's layer table (the layer they "
                         f"belong to, with what they import): {missing}")


def untruths(table: list[Row], imports: list[Import]) -> list[str]:
    """What the code does that the table does not say: every import that does not point down,
    and every row whose ``imports`` column is not exactly what its modules import."""
    problems: list[str] = []
    found_by_row: dict[int, set[str]] = {row.index: set() for row in table}
    for found in imports:
        source, target = place(found.source, table), place(found.target, table)
        if source is None or target is None:
            continue  # reported by test_every_file_of_the_package_has_a_row
        (row, name), (target_row, target_name) = source, target
        if name == target_name:
            continue  # within one package or file
        where = f"{found.source}:{found.line} imports {found.target}"
        if target_row.index <= row.index:
            relation = "a row above" if target_row.index < row.index else "its own row"
            problems.append(f"{where}{' (inside a function)' if found.lazy else ''}: "
                            f"{target_name} is in {relation} ({name} may import only the rows "
                            "below it)")
            continue
        if not target_row.foundation:
            found_by_row[row.index].add(target_name)
    for row in table:
        if row.foundation:
            continue
        if "any row below" not in row.text and found_by_row[row.index] != row.imports:
            problems.append(f"row {row.names}: the table says it imports {sorted(row.imports)}, "
                            f"the code imports {sorted(found_by_row[row.index])}")
    return problems


def test_every_import_points_down_and_each_row_says_what_it_imports(
        table: list[Row], imports: list[Import]) -> None:
    problems = untruths(table, imports)
    assert not problems, "ARCHITECTURE.md's layer table is not true:\n" + "\n".join(problems)


@pytest.mark.parametrize(("source", "target"), [
    ("services.py", "server/app.py"),  # what svc.asgi_app did before dosirak.faces
    ("frameworks/sklearn.py", "legacy/framework_artifacts.py"),  # 0.x artifact names, likewise
    ("service_class.py", "legacy/service.py"),  # @dosirak.api given 0.x arguments, likewise
    ("store/manifest.py", "models.py"),
])
def test_an_import_that_points_up_is_refused_even_inside_a_function(
        table: list[Row], imports: list[Import], source: str, target: str) -> None:
    source_place, target_place = place(source, table), place(target, table)
    assert source_place is not None and target_place is not None
    problems = untruths(table, [*imports, Import(source, target, line=1, lazy=True)])
    assert problems == [f"{source}:1 imports {target} (inside a function): {target_place[1]} "
                        f"is in a row above ({source_place[1]} may import only the rows below "
                        "it)"]


def test_the_reading_sees_imports_of_every_kind(imports: list[Import]) -> None:
    # The reader itself: a lazy import, a TYPE_CHECKING one and a "from dosirak import x".
    seen = {(found.source, found.target, found.lazy) for found in imports}
    assert ("models.py", "runner/__init__.py", True) in seen  # Model.to_runner, lazily
    assert ("__init__.py", "models.py", False) in seen  # TYPE_CHECKING and "from dosirak import"
    assert ("server/app.py", "server/endpoint.py", False) in seen
