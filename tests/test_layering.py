"""One direction of dependencies: the package's folders are the pipeline, and imports run one way.

Every module of video_iared is parsed with ``ast``; every import counts, at module level and inside functions
(relative imports resolved; ``from pkg import name`` is an import of ``pkg.name`` when that is a module, else of
``pkg``). Asserted: (a) no import cycle among the package's modules, (b) every import goes to the importer's own
package or to a lower layer of ``LAYERS``, (c) nothing outside ``video_iared.benchmarks`` imports it.
The layer rule is described in docs/design.md ("Layers").
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "video_iared"

# low to high; a module may import from its own package and from packages of lower layers only. The two leaves
# (config, utils) may import each other's modules.
LAYERS: List[Tuple[str, ...]] = [
    ("config", "utils"),
    ("synthetic", "data", "models", "profiling"),
    ("pruning",),
    ("baselines",),
    ("checkpoint",),
    ("build",),
    ("engine",),
    ("interpret", "deploy"),
    ("benchmarks",),
    ("tools_main",),
    ("cli", ""),  # "": the package's own __init__ (its lazy build_model / load_checkpoint)
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}
LEAVES = set(LAYERS[0])

Edge = Tuple[str, str, int]  # (importer, imported, line)


def module_files() -> Dict[str, Tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _known(name: str, modules: Dict[str, Tuple[Path, bool]]) -> str:
    """The longest prefix of ``name`` that is a module of the package ("" if none)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


def import_edges() -> Tuple[Dict[str, Tuple[Path, bool]], List[Edge]]:
    """Every import of a video_iared module by a video_iared module, with its line."""
    modules = module_files()
    edges: List[Edge] = []
    for mod, (path, is_pkg) in modules.items():
        package = mod.split(".") if is_pkg else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [_known(a.name, modules) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for a in node.names:
                    sub = f"{source}.{a.name}"
                    targets.append(sub if sub in modules else _known(source, modules))
            for t in targets:
                if t and t != mod:
                    edges.append((mod, t, node.lineno))
    return modules, edges


def _package(mod: str) -> str:
    """The top-level folder (or root module) of ``mod`` under video_iared; "" for video_iared itself."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_cycle(edges: List[Edge]) -> List[str]:
    """One import cycle as [m0, m1, ..., m0], or [] when the graph is acyclic."""
    graph: Dict[str, List[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, []).append(b)
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(v: str) -> List[str]:
        state[v] = 1
        path.append(v)
        for w in graph.get(v, []):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        state[v] = 2
        path.pop()
        return []

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return []


def _where(modules, mod: str, line: int) -> str:
    return f"{modules[mod][0].relative_to(ROOT)}:{line}"


def test_every_package_has_a_layer():
    modules, _ = import_edges()
    missing = sorted({_package(m) for m in modules} - set(LAYER_OF))
    assert not missing, f"video_iared/{missing}: no layer in tests/test_layering.py LAYERS (and docs/design.md)"


def test_no_import_cycles():
    modules, edges = import_edges()
    cycle = find_cycle(edges)
    lines = {(a, b): line for a, b, line in edges}
    assert not cycle, "import cycle: " + " -> ".join(cycle) + "\n" + "\n".join(
        f"  {_where(modules, a, lines[a, b])}: {a} imports {b}" for a, b in zip(cycle, cycle[1:]))


def test_imports_follow_the_layers():
    modules, edges = import_edges()
    bad = []
    for a, b, line in edges:
        pa, pb = _package(a), _package(b)
        if pa == pb or (pa in LEAVES and pb in LEAVES):
            continue
        if LAYER_OF.get(pb, 99) >= LAYER_OF.get(pa, -1):
            bad.append(f"  {_where(modules, a, line)}: {a} (layer {LAYER_OF.get(pa)}) imports {b} "
                       f"(layer {LAYER_OF.get(pb)})")
    assert not bad, "imports against the layer order (tests/test_layering.py LAYERS):\n" + "\n".join(sorted(bad))


def test_benchmarks_are_imported_by_no_other_package_module():
    modules, edges = import_edges()
    bad = [f"  {_where(modules, a, line)}: {a} imports {b}" for a, b, line in edges
           if _package(b) == "benchmarks" and _package(a) not in ("benchmarks",) + LAYERS[-2] + LAYERS[-1]]
    assert not bad, "video_iared.benchmarks is the top: only entry points may import it\n" + "\n".join(bad)


def test_the_checker_sees_function_level_and_relative_imports():
    """The parser itself: a function-level import and a relative one are both edges."""
    _, edges = import_edges()
    pairs = {(a, b) for a, b, _ in edges}
    assert ("video_iared.models.timesformer", "video_iared.models.block") in pairs  # relative, module level
    assert ("video_iared.cli", "video_iared.tools_main") in pairs  # inside a function
