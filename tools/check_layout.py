"""Check the package layout: no import cycles, each layer imports only what it may, no module too long.

Run ``python tools/check_layout.py`` (CI does, and ``tests/test_layout.py`` calls ``problems()``). Imports are
read with ``ast`` (nothing is imported), lazy imports inside functions included, ``if TYPE_CHECKING:`` blocks
excluded. Exit status 1 and one line per problem when something is wrong.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_LINES = 400

# (module prefix, imported prefix) pairs that must not occur: the layering of docs/ARCHITECTURE.md in one table
FORBIDDEN = [
    ("lerowds.convert", "lerowds.reader"),
    ("lerowds.reader", "lerowds.convert"),
    ("lerowds.format", "lerowds.reader"),
    ("lerowds.format", "lerowds.convert"),
    ("lerowds.format", "torch"),
    ("lerowds.format", "av"),
    ("lerowds.convert", "torch"),
    ("lerowds.reader.io", "torch"),
    ("lerowds.reader.io", "av"),
    ("lerowds.reader.io", "torchcodec"),
    ("lerowds.reader.io", "lerowds.reader.decode"),
    ("lerowds.reader.io", "lerowds.reader.sample"),
    ("lerowds.reader.io", "lerowds.reader.order"),
    ("lerowds.reader.order", "torch"),
    ("lerowds.reader.order", "av"),
    ("lerowds.reader.order", "lerowds.reader.io"),
    ("lerowds.reader.order", "lerowds.reader.decode"),
    ("lerowds.reader.order", "lerowds.reader.sample"),
    ("lerowds.reader.resume", "torch"),
    ("lerowds.reader.resume", "lerowds.reader.io"),
    ("lerowds.reader.decode", "lerowds.reader.io"),
    ("lerowds.reader.sample", "lerowds.reader.io"),
    # the loader and the stream know sources only through their protocols, not the concrete datasets
    ("lerowds.reader.loader", "lerowds.reader.dataset"),
    ("lerowds.reader.loader", "lerowds.reader.mix"),
    ("lerowds.reader.stream", "lerowds.reader.dataset"),
    ("lerowds.reader.stream", "lerowds.reader.mix"),
    ("lerowds.reader.stream", "lerowds.reader.loader"),
    ("lerowds.reader.dataset", "lerowds.reader.mix"),  # the mix is built on the dataset, not the reverse
]


def modules(src: Path = SRC) -> dict[str, Path]:
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """All nodes but those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules ``name`` imports (absolute names; a ``from pkg import submodule`` counts as the submodule)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return out


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
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
                        cycles.append(sorted(component))
    return cycles


def _is_parent_package(a: str, b: str) -> bool:
    """``a`` is a package that ``b`` lives in: importing ``b`` runs ``a`` first, which is not a cycle."""
    return b.startswith(a + ".")


def problems(src: Path = SRC) -> list[str]:
    known = modules(src)
    deps = {n: imports(n, p, known) for n, p in known.items()}
    # edges inside the package (a package's __init__ re-exporting its own submodules is not a cycle with them)
    graph = {
        n: {i for i in d if i in known and i != n and not _is_parent_package(i, n)} for n, d in deps.items()
    }
    out = [f"import cycle: {' <-> '.join(c)}" for c in find_cycles(graph)]
    for name, path in known.items():
        for mod, banned in FORBIDDEN:
            if name == mod or name.startswith(mod + "."):
                for dep in sorted(deps[name]):
                    if dep == banned or dep.startswith(banned + "."):
                        out.append(
                            f"{path.relative_to(src)}: {name} imports {dep} ({mod} must not import {banned})"
                        )
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            out.append(
                f"{path.relative_to(src)}: {lines} lines (at most {MAX_LINES}; split it by responsibility)"
            )
    return out


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
