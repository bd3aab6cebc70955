"""The layout is the pipeline: the package mapping, the import rules between stages (the table in
docs/architecture.md), no import cycle between modules, module size, and a bot's light imports."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["ingest", "lake", "features", "train", "serve", "backtest", "web", "sim"]
SHARED = "slotml"

# What each stage may import from the other stages (the shared `slotml` package is always fine).
ALLOWED = {
    "ingest": set(),
    "sim": {"ingest"},
    "lake": {"ingest"},
    "features": {"lake", "ingest"},
    "serve": {"features", "ingest"},
    "backtest": {"serve", "features", "lake"},
    "train": {"features", "lake", "backtest", "serve"},
    "web": {"ingest", "lake", "features", "serve", "backtest"},
}
# Where a stage may reach only some modules of another (module prefixes).
ONLY = {
    ("features", "ingest"): ("slotml.ingest.schema",),
    ("serve", "features"): ("slotml.features.contract",),
    # the snapshot function; the collector only for live.py (a bot that collects as it trades)
    ("serve", "ingest"): ("slotml.ingest.snapshot", "slotml.ingest.collector"),
    # a challenger is scored as a bot scores it
    ("train", "serve"): ("slotml.serve.scorer", "slotml.serve.options", "slotml.serve.scores"),
}
MAX_LINES = 400  # past this (with some slack), the module's docstring says why


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _modules() -> dict[str, Path]:
    """Every project module by dotted name (``slotml.<stage>.x``, ``slotml.x``)."""
    out: dict[str, Path] = {}
    for folder in [SHARED, *STAGES]:
        base = ["slotml"] if folder == SHARED else ["slotml", folder]
        for py in (ROOT / folder).rglob("*.py"):
            parts = list(py.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(base + parts)] = py
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Project modules ``name`` imports, at any depth in the file (inside functions too)."""
    path = MODULES[name]
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            for a in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{mod}.{a.name}"
                found.add(sub if sub in MODULES else mod)
    resolved = set()
    for m in found:
        while m and m not in MODULES:  # a name inside a module: the module
            m = m.rpartition(".")[0]
        if m and m.startswith("slotml"):
            resolved.add(m)
    return resolved - {name}


GRAPH = {m: _imports(m) for m in MODULES}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else SHARED


def test_every_package_folder_is_mapped() -> None:
    cfg = _pyproject()["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    for stage in STAGES:
        assert mapping[f"slotml.{stage}"] == stage
        for init in (ROOT / stage).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / stage)
            name = ".".join(["slotml", stage, *rel.parts])
            assert name in listed, f"{init.parent} is a package but {name} is not in pyproject"
        for py in (ROOT / stage).rglob("*.py"):
            assert (py.parent / "__init__.py").exists(), f"{py.parent} lacks __init__.py"


@pytest.mark.parametrize("stage", STAGES)
def test_import_rules(stage: str) -> None:
    bad = []
    for mod, deps in GRAPH.items():
        if _stage(mod) != stage:
            continue
        for dep in deps:
            other = _stage(dep)
            if other in (stage, SHARED):
                continue
            if other not in ALLOWED[stage]:
                bad.append(f"{mod} -> {dep} ({stage} may import {sorted(ALLOWED[stage])})")
            elif (stage, other) in ONLY and not dep.startswith(ONLY[(stage, other)]):
                bad.append(f"{mod} -> {dep} ({stage} may import only {ONLY[(stage, other)]})")
    assert not bad, "\n".join(bad)


def test_shared_package_imports_no_stage() -> None:
    bad = [f"{m} -> {d}" for m, deps in GRAPH.items() if _stage(m) == SHARED and m != "slotml.cli"
           and m != "slotml.demo" for d in deps if _stage(d) != SHARED]
    assert not bad, "\n".join(bad)


def test_cli_reaches_stages_only_through_their_cli() -> None:
    """slotml/cli.py names each stage's cli module (by string, imported lazily)."""
    from slotml.cli import STAGE_CLIS

    assert {m.split(".")[1] for m in STAGE_CLIS} == set(STAGES) - {"serve"}  # serve is a library
    for m in STAGE_CLIS:
        assert m in MODULES


def test_no_import_cycles() -> None:
    """Strongly connected components of the module graph, imports inside functions included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_cycle_detector_sees_function_level_imports() -> None:
    """Teeth: the graph holds an import made inside a function (the launcher builds the cache)."""
    assert "slotml.web.dashboard_cache" in GRAPH["slotml.web.dashboard_run"]


def test_modules_stay_small_or_say_why() -> None:
    long = []
    for path in MODULES.values():
        n = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if n > MAX_LINES + 25 and "lines" not in doc:
            long.append(f"{path.relative_to(ROOT)}: {n} lines, and its docstring does not say why")
    assert not long, "\n".join(long)


def test_nothing_but_cli_imports_sim() -> None:
    for mod, deps in GRAPH.items():
        if _stage(mod) != "sim" and mod not in ("slotml.cli", "slotml.demo"):
            assert not [d for d in deps if _stage(d) == "sim"], mod


def test_cli_help_is_fast_and_light() -> None:
    """`slotml --help` must not import the heavy stacks (parsers only)."""
    code = (
        "import sys; from slotml.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('xgboost','duckdb','onnxruntime','polars','sklearn') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# What a trading bot imports (serve/live.py excepted: it runs the collector beside the bot).
BOT_MODULES = sorted(
    m for m in MODULES
    if (_stage(m) == "serve" and m != "slotml.serve.live") or m in (
        "slotml.features.contract", "slotml.model_file")
)


def _modules_after(code: str) -> set[str]:
    probe = (
        f"import sys\n{code}\n"
        "std = set(sys.stdlib_module_names)\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} - std)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.strip().split(",")) - {"", "slotml", "__main__"}


def _third_party_after(code: str) -> set[str]:
    """Top-level non-stdlib modules loaded after ``code``, beyond what an empty interpreter
    already holds (site hooks, the editable install's finder)."""
    return _modules_after(code) - _modules_after("pass")


def test_a_bot_imports_only_onnxruntime_and_numpy() -> None:
    """Every module a bot touches, loaded (and onnxruntime used), pulls in nothing beyond what
    onnxruntime and numpy bring themselves."""
    assert "slotml.serve.scorer" in BOT_MODULES and "slotml.serve.online" in BOT_MODULES
    allowed = _third_party_after("import numpy, onnxruntime")
    assert {"numpy", "onnxruntime"} <= allowed
    extra = _third_party_after("\n".join(f"import {m}" for m in BOT_MODULES)
                               + "\nimport onnxruntime") - allowed
    assert not extra, f"a bot's imports ({BOT_MODULES}) pull in {sorted(extra)}"
    # and lazily: the package alone loads nothing third-party
    assert _third_party_after("import slotml.serve") == set()
