"""serve/: what a trading bot imports: the scorer, entry gate, options, online features, live helpers.

The public names load lazily (``from slotml.serve import Scorer, EntryGate``) so that
importing the package pays nothing, and a bot importing the
scorer never pulls in xgboost, duckdb, polars or sklearn.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Scorer": "slotml.serve.scorer",
    "ModelFileError": "slotml.model_file",
    "ModelMeta": "slotml.model_file",
    "EntryGate": "slotml.serve.gate",
    "GateConfig": "slotml.serve.gate",
    "Decision": "slotml.serve.gate",
    "FeeSchedule": "slotml.serve.gate",
    "add_model_args": "slotml.serve.gate",
    "OnlineFeatures": "slotml.serve.online",
    "WindowState": "slotml.serve.online",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'slotml.serve' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value
