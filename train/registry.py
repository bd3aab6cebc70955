"""``<models>/registry.jsonl``: every model trained and every promotion decision, append-only.

One JSON object a line, never rewritten. Two kinds (``kind``):

- ``model``: a model file written by ``slotml train`` (file, created_at, data span, the slices,
  a metrics summary, final flag, and for a ``--final`` refit the evaluation model it refits);
- ``decision``: a ``--challenge`` outcome (champion, challenger, the paired Brier difference and
  its CI, the maker PnL difference and its CI, promoted, reason, validated_at, and the final
  refit that went live).

Appends are one ``write`` of a whole line on a file opened for append, then fsync: a crash can
leave at most a torn LAST line, which the reader skips and counts (``Registry.torn``) instead of
failing; the next append starts on a fresh line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REGISTRY_NAME = "registry.jsonl"


def registry_path(models_dir: Path) -> Path:
    return Path(models_dir) / REGISTRY_NAME


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def append(models_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one record (a ``kind`` and fields) as a line, fsync'd; returns it with ``at``."""
    rec = {"at": now_iso(), **record}
    line = json.dumps(rec, sort_keys=True, default=str)
    path = registry_path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # a torn last line (a crash mid-append) must not swallow this record: start afresh
        size = os.fstat(fd).st_size
        prefix = ""
        if size:
            with path.open("rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    prefix = "\n"
        os.write(fd, (prefix + line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return rec


@dataclass
class Registry:
    records: list[dict[str, Any]] = field(default_factory=list)
    torn: int = 0  # lines that were not one JSON object (skipped)

    def models(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == "model"]

    def decisions(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == "decision"]

    def model(self, name: str) -> dict[str, Any] | None:
        """The model record of file ``name`` (the last one, if written twice)."""
        return next((r for r in reversed(self.models()) if r.get("model") == name), None)


def read(models_dir: Path) -> Registry:
    """Every record, in order; a line that is not a JSON object is skipped and counted."""
    reg = Registry()
    try:
        text = registry_path(models_dir).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return reg
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            reg.torn += 1
            continue
        if isinstance(rec, dict):
            reg.records.append(rec)
        else:
            reg.torn += 1
    if reg.torn:
        log.warning("%s: %d torn or unreadable line(s) skipped", registry_path(models_dir), reg.torn)
    return reg


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The test-day scores worth keeping in a line (the card has the rest)."""
    if not metrics or metrics.get("final"):
        return {k: metrics.get(k) for k in ("evaluation_model", "evaluation_overall") if metrics}
    ov = metrics.get("overall") or {}
    keep = ("n", "brier", "log_loss", "ece", "auc")
    return {"rows": metrics.get("rows"),
            **{name: {k: (ov.get(name) or {}).get(k) for k in keep}
               for name in ("model", "book_mid", "base_rate") if name in ov}}


def model_record(card: dict[str, Any], *, span: tuple[int | None, int | None] = (None, None),
                 evaluation_model: str | None = None) -> dict[str, Any]:
    """A ``model`` record from a train run's card (``TrainResult.card``)."""
    splits = card.get("splits") or {}
    firsts = [s.get("from") for s in splits.values() if isinstance(s, dict) and s.get("from") is not None]
    lasts = [s.get("to") for s in splits.values() if isinstance(s, dict) and s.get("to") is not None]
    return {
        "kind": "model",
        "model": card.get("model"),
        "created_at": card.get("created_at"),
        "final": bool(card.get("final")),
        "evaluation_model": evaluation_model,
        "data_span": {"first_slot": min(firsts) if firsts else None,
                      "last_slot": max(lasts) if lasts else None,
                      "slot_from": span[0], "slot_to": span[1]},
        "windows": card.get("windows"),
        "rows": card.get("rows"),
        "lake_manifest_id": card.get("lake_manifest_id"),
        "splits": splits,
        "params": (card.get("booster") or {}).get("params"),
        "metrics": _summary(card.get("metrics") or {}),
    }
