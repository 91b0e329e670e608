"""No import loop among `events`, `services` and `projections`, counting the imports inside functions too.

A loop hidden in a function (a module importing, when called, one that imports it) still ties the two
together: neither can be understood, tested or split off alone, and the order modules happen to be imported
in decides whether it works. Imports under `if TYPE_CHECKING:` are for annotations only and are not counted;
nor is a module's dependence on its own parent packages (Python imports those first, whatever the module).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from services.config import REPO_ROOT

PACKAGES = ("events", "services", "projections")


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _imports(ast.Module([child], [])))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def imported_by(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The engine's modules `name` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            targets.add(submodule if submodule in known else source)
    edges = set()
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and target not in ancestors:
            edges.add(target)
    return edges


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_through_others() -> None:
    known = modules()
    graph = {name: imported_by(name, path, known) for name, path in known.items()}
    assert loops(graph) == []


def test_the_check_finds_a_loop_hidden_in_a_function() -> None:
    assert loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    known = modules()
    # The shared configuration and the env helpers import no component: components import them.
    for leaf in ("services.config", "services.envvars"):
        assert not {m for m in imported_by(leaf, known[leaf], known) if m.startswith(("services.", "projections"))
                    if m not in ("services.envvars", "services.logs", "services.stack.cluster")}, leaf  # fmt: skip
