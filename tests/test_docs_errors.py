"""docs/errors.md stays true: its option table is the parsers' declared ranges, and every
reason code the code can emit is listed."""

from __future__ import annotations

import re
from pathlib import Path

from slotml.cli import option_ranges
from slotml.serve import gate

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def test_option_table_is_current() -> None:
    text = DOC.read_text()
    m = re.search(r"<!-- option-ranges:begin -->\n(.*?)<!-- option-ranges:end -->", text, re.S)
    assert m, "docs/errors.md lost its option-ranges markers"
    assert m.group(1) == option_ranges(), (
        "docs/errors.md is stale: paste slotml.cli.option_ranges() between the markers")


def test_every_gate_reason_code_is_documented() -> None:
    text = DOC.read_text()
    codes = [v for k, v in vars(gate).items() if k.isupper() and isinstance(v, str)
             and re.fullmatch(r"[a-z_]+", v) and k not in ("UP", "DOWN")]
    assert "invalid_p_win" in codes
    for code in codes:
        assert f"`{code}`" in text, code


def test_price_rejection_reasons_are_documented() -> None:
    text = DOC.read_text()
    for reason in ("non_finite", "non_positive", "out_of_bounds", "prices_reanchored"):
        assert f"`{reason}`" in text
