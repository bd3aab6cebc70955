from __future__ import annotations

import json
from pathlib import Path

import pytest

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def _lines(name: str) -> list:
    return [json.loads(x) for x in (FIX / name).read_text().splitlines() if x.strip()]


@pytest.fixture(scope="session")
def rtds_frames() -> list:
    return _lines("rtds_frames.jsonl")


@pytest.fixture(scope="session")
def clob_frames() -> list:
    return _lines("clob_market_frames.jsonl")
