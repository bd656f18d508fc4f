"""Package imports follow DESIGN.md's direction, with no cycles between packages.

    cli -> sweeps, report -> analyses -> figures, store, tasks, training, monitor -> probes, rmt
        -> models, nn, data -> config -> registry        (errors is importable by all)

Every module's imports are read with `ast` (function-level and TYPE_CHECKING imports included, relative
imports resolved); a module maps to its package under bnlab (top-level modules such as config.py are
their own unit). An import from a lower layer into a higher one fails, and so does any cycle between
packages (within a layer too); each message names the file, its line and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "bnlab"

LAYERS: list[set[str]] = [  # highest first
    {"cli"},
    {"sweeps", "report"},
    {"analyses"},
    {"figures", "store", "tasks", "training", "monitor"},
    {"probes", "rmt"},
    {"models", "nn", "data"},
    {"config", "config_checks"},
    {"registry"},
]
ANYWHERE = {"errors", "__init__"}  # errors: importable by all; __init__: bnlab's lazy top-level API
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(module: str) -> str | None:
    """'bnlab.training.loop' -> 'training'; 'bnlab.config' -> 'config'; 'bnlab' -> '__init__'."""
    parts = module.split(".")
    if parts[0] != "bnlab":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, at any depth, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "bnlab":  # `from bnlab import data`: the names are the units
                out += [(node.lineno, f"bnlab.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


def edges() -> list[tuple[str, str, str]]:
    """(from unit, to unit, 'file:line imports module') for every import between different units."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        src_unit = unit_of(module_name(path))
        for line, mod in imports(path):
            dst = unit_of(mod)
            if dst is None or dst == src_unit or src_unit is None:
                continue
            where = f"{path.relative_to(SRC.parents[1])}:{line} imports {mod}"
            out.append((src_unit, dst, where))
    return out


def layer_violations() -> list[str]:
    bad = []
    for src, dst, where in edges():
        if src in ANYWHERE or dst in ANYWHERE:
            continue
        if src not in RANK or dst not in RANK:
            bad.append(f"{where}: package {src if src not in RANK else dst!r} has no layer in DESIGN.md")
        elif RANK[dst] < RANK[src]:
            bad.append(f"{where}: {src} may not import {dst} (a higher layer)")
    return bad


def cycles() -> list[str]:
    """Every import between two packages that lies on a cycle (same-layer cycles included)."""
    graph: dict[str, set[str]] = {}
    first: dict[tuple[str, str], str] = {}
    for src, dst, where in edges():
        if src in ANYWHERE or dst in ANYWHERE:
            continue
        graph.setdefault(src, set()).add(dst)
        first.setdefault((src, dst), where)

    def reaches(a: str, b: str) -> bool:
        seen, todo = set(), [a]
        while todo:
            n = todo.pop()
            if n == b:
                return True
            if n not in seen:
                seen.add(n)
                todo += graph.get(n, ())
        return False

    return [
        f"{where}: cycle {src} -> {dst} -> ... -> {src}"
        for (src, dst), where in sorted(first.items())
        if reaches(dst, src)
    ]


def test_every_package_has_a_layer():
    units = {unit_of(module_name(p)) for p in SRC.rglob("*.py")}
    assert units - set(RANK) - ANYWHERE == set()


def test_imports_go_down_the_layers():
    bad = layer_violations()
    assert not bad, "imports against DESIGN.md's layer order:\n" + "\n".join(bad)


def test_no_cycles_between_packages():
    bad = cycles()
    assert not bad, "import cycles between packages:\n" + "\n".join(bad)


def test_the_reader_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "bnlab" / "config.py"
    pkg.parent.mkdir()
    pkg.write_text("def f():\n    from .models import MODELS\n    import bnlab.probes.registry\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path / "bnlab")
    assert [m for _, m in imports(pkg)] == ["bnlab.models", "bnlab.probes.registry"]
    assert {(s, d) for s, d, _ in edges()} == {("config", "models"), ("config", "probes")}
    assert any("config may not import models" in v for v in layer_violations())
