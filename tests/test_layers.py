"""Layers that point one way: no import cycle in ``src/avformer`` and no import from a lower layer to a higher one.

Every ``import`` of every module counts, wherever it stands (module level, inside a function, under
``TYPE_CHECKING``): a lazy import is still a dependency. The layers, from the bottom (see ``../shared/DESIGN.md``):

    0  data, layers, utils, config, profiling     decoding, building blocks, helpers
    1  models, fusion, losses, metrics, registry  encoders (one contract), fusion modules, objectives, metrics
    2  tasks                                      objectives bound to batch keys
    3  eval                                       evaluation of trained runs
    4  train                                      the trainer and the composition of experiments
    5  cli, __main__, api                         parse arguments, print results; the Python API for files
    6  the package root (avformer/__init__.py)    re-exports the public API, lazily (PEP 562)

Packages of one layer may import each other's modules (``fusion`` implements the encoder contract of
``models.base``; ``models.av_model`` composes fusions) as long as the module graph has no cycle. A new top-level
package or module must be given a layer here, or this test fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: dict[str, int] = {
    "avformer": 6,  # the package root: the version and the public API (avformer.load, ...), imported lazily
    "_version": 0,
    "data": 0,
    "layers": 0,
    "utils": 0,
    "config": 0,
    "profiling": 0,
    "models": 1,
    "fusion": 1,
    "losses": 1,
    "metrics": 1,
    "registry": 1,
    "tasks": 2,
    "eval": 3,
    "train": 4,
    "cli": 5,
    "api": 5,
    "__main__": 5,
}


def module_graph(src: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules it imports}`` for every module of ``package`` under ``src`` (imports of other packages
    are left out). ``from a import b`` counts as an import of ``a.b`` when that is a module, else of ``a``."""
    root = src / package
    modules: dict[str, tuple[Path, bool]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_pkg else parts)
        modules[name] = (path, is_pkg)
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in modules.items():
        here = name if is_pkg else name.rpartition(".")[0]
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    out.add(f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target)
        graph[name] = {m for m in out if m in modules and m != name}
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_violations(graph: Mapping[str, Iterable[str]], layers: Mapping[str, int]) -> list[str]:
    """One line per problem: a module outside every layer, an import that climbs a layer, an import cycle."""
    problems = []
    for top in sorted({_top(m) for m in graph} - set(layers)):
        problems.append(f"{top}: not in any layer (give it one in tests/test_layers.py)")
    for a in sorted(graph):
        for b in sorted(graph[a]):
            la, lb = layers.get(_top(a)), layers.get(_top(b))
            if la is not None and lb is not None and lb > la:
                problems.append(f"upward import: {a} (layer {la}) imports {b} (layer {lb})")
    for comp in _cycles(graph):
        problems.append(f"import cycle: {' <-> '.join(comp)}")
    return problems


def test_the_source_tree_has_one_way_layers() -> None:
    problems = layer_violations(module_graph(SRC, "avformer"), LAYERS)
    assert not problems, "\n".join(problems)


def test_the_graph_reads_every_kind_of_import() -> None:
    graph = module_graph(SRC, "avformer")
    assert "avformer.models.registry" in graph["avformer.models.vit"]  # from-import of a module's names
    assert "avformer.models.base" in graph["avformer.fusion.base"]  # under TYPE_CHECKING
    assert len(graph) > 60


def test_the_checker_catches_a_cycle_and_a_climb(tmp_path: Path) -> None:
    pkg = tmp_path / "fake"
    for folder in ("", "data", "models", "train"):
        (pkg / folder).mkdir(exist_ok=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "data" / "reader.py").write_text("from fake.train.loop import fit\n")  # climbs two layers
    (pkg / "models" / "a.py").write_text("from . import b\n")
    (pkg / "models" / "b.py").write_text("def f():\n    import fake.models.a\n")  # a lazy import closes the cycle
    (pkg / "train" / "loop.py").write_text("import fake.models.a\n\ndef fit():\n    pass\n")
    (pkg / "extra.py").write_text("")
    layers = {"fake": 0, "data": 0, "models": 1, "train": 2}
    problems = layer_violations(module_graph(tmp_path, "fake"), layers)
    assert problems == [
        "extra: not in any layer (give it one in tests/test_layers.py)",
        "upward import: fake.data.reader (layer 0) imports fake.train.loop (layer 2)",
        "import cycle: fake.models.a <-> fake.models.b",
    ]


@pytest.mark.parametrize("module", ["avformer.config", "avformer.data.config"])
def test_reading_a_config_does_not_load_the_decoder(module: str) -> None:
    import subprocess
    import sys

    code = f"import sys, {module}; print('av' in sys.modules, 'avformer.data.dataset' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
