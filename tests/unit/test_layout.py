"""The layout stays as docs/architecture.md draws it: no import circles, `app` never reaching
into `workers` or `tasks`, small service files, and a docstring on everything public.

Imports are read from the source (every `import`, at any depth, `TYPE_CHECKING` ones included),
so a circle is caught whether or not it would fail at run time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "workers", "tasks", "devtools", "tests", "bench")
SERVICE = ("app", "workers", "tasks")
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The project modules that the module `name` (at `path`) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` names the module; `from module import name` the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]  # fmt: skip
        else:
            continue
        yield from (target for target in targets if target in modules and target != name)


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: set(imported(name, path, modules)) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other in a loop (Tarjan's strongly connected
    components with more than one member)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_project_imports_itself_through_others() -> None:
    assert circles(import_graph()) == []


def test_no_package_of_app_imports_one_that_imports_it_back() -> None:
    """The stages of `app` are layered: between two packages, imports go one way only."""
    packages: dict[str, set[str]] = {}
    for name, targets in import_graph().items():
        if name.startswith("app."):
            source = ".".join(name.split(".")[:2])
            packages.setdefault(source, set()).update(
                ".".join(t.split(".")[:2]) for t in targets if t.startswith("app.")
            )
    for source in packages:
        packages[source].discard(source)
    for name in list(packages):
        for target in packages[name]:
            packages.setdefault(target, set())
    assert circles(packages) == []


def test_app_never_imports_workers_or_tasks() -> None:
    reaching = {
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        if name == "app" or name.startswith("app.")
        for target in targets
        if target.split(".")[0] in ("workers", "tasks")
    }
    assert reaching == set()


@pytest.mark.parametrize("package", SERVICE)
def test_no_service_file_is_over_300_lines(package: str) -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / package).rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def undocumented(path: Path) -> Iterator[str]:
    """Public classes and functions (methods of public classes too) without a docstring."""
    tree = ast.parse(path.read_text(), str(path))
    if ast.get_docstring(tree) is None:
        yield "(module)"
    scopes: list[tuple[str, list[ast.stmt]]] = [("", tree.body)]
    while scopes:
        prefix, body = scopes.pop()
        for node in body:
            if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if node.name.startswith("_"):
                continue
            if ast.get_docstring(node) is None:
                yield prefix + node.name
            if isinstance(node, ast.ClassDef):
                scopes.append((f"{prefix}{node.name}.", node.body))


@pytest.mark.parametrize("package", SERVICE)
def test_every_public_function_and_class_of_the_service_says_what_it_is(package: str) -> None:
    missing = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in undocumented(path)
    }
    assert sorted(missing) == []
