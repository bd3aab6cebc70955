"""The layout is the pipeline: check the package mapping and the import rules between stages."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["ingest", "lake", "features", "train", "serve", "sim"]

# What each stage may import from the other stages (the shared `slotml` package is always fine).
ALLOWED = {
    "ingest": set(),
    "sim": {"ingest"},  # the pure snapshot function (and its schema) only
    "lake": {"ingest"},
    "features": {"lake"},
    "serve": {"ingest", "lake", "features"},
    "train": {"features", "serve", "lake", "ingest"},
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


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


def _stage_imports(stage: str) -> set[str]:
    found: set[str] = set()
    for py in (ROOT / stage).rglob("*.py"):
        tree = ast.parse(py.read_text(), filename=str(py))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                parts = n.split(".")
                if parts[0] == "slotml" and len(parts) > 1 and parts[1] in STAGES:
                    found.add(parts[1])
    return found - {stage}


@pytest.mark.parametrize("stage", STAGES)
def test_import_rules(stage: str) -> None:
    bad = _stage_imports(stage) - ALLOWED[stage]
    assert not bad, f"{stage}/ imports {sorted(bad)}; allowed: {sorted(ALLOWED[stage])}"


def test_nothing_but_cli_imports_sim() -> None:
    for stage in STAGES:
        if stage != "sim":
            assert "sim" not in _stage_imports(stage)


def test_cli_help_is_fast_and_light() -> None:
    """`slotml --help` must not import the heavy stacks (parsers only)."""
    code = (
        "import sys; from slotml.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('xgboost','duckdb','onnxruntime','polars','sklearn') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
