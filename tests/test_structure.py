"""The package's shape: no import cycles, no oversized modules without a stated reason."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "anatomix"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """anatomix modules imported anywhere in a file (top level or inside functions)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != name:
                out.add(t)
    return out


def test_no_import_cycle():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    g = nx.DiGraph()
    for name, path in files.items():
        for target in _imports(path, name, modules):
            # a package's __init__ importing its own submodules is how packages work, not a cycle
            if target.startswith(name + ".") or name.startswith(target + "."):
                continue
            g.add_edge(name, target)
    cycles = list(nx.simple_cycles(g))
    assert not cycles, cycles[:5]


def test_no_oversized_module_without_a_reason():
    """A file over ~500 lines is two files, unless its top says why (a line starting `# size:`)."""
    big = []
    for p in PACKAGE.rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES and "\n# size:" not in "\n" + text[:4000]:
            big.append(f"{p.relative_to(PACKAGE.parent)} ({text.count(chr(10))} lines)")
    assert not big, big
