"""slotml/argtypes.py: each kind of quantity accepts exactly the finite values in its range."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slotml import argtypes
from slotml.argtypes import Number

KINDS = [
    argtypes.seconds(0.05, 3600),
    argtypes.seconds(0, 86400, lo_open=False),
    argtypes.megabytes(1, 10**6),
    argtypes.probability(),
    argtypes.probability(0, 1, lo_open=True, hi_open=True),
    argtypes.rate(0, 100),
    argtypes.days(0, 3650),
    argtypes.nonneg(100, "percent"),
    argtypes.real(-1, 1, "edge", lo_open=True, hi_open=True),
    argtypes.count(1, 10**7),
    argtypes.integer(0, 600_000, "milliseconds"),
    argtypes.port(),
    argtypes.port(allow_zero=True),
]
IDS = [f"{t.kind}{t.range_text()}" for t in KINDS]


def accepts(t: Number, text: str) -> bool:
    try:
        t(text)
    except argparse.ArgumentTypeError:
        return False
    return True


@pytest.mark.parametrize("t", KINDS, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(x=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**12, 10**12).map(float))
def test_accepts_exactly_the_finite_values_in_range(t: Number, x: float) -> None:
    text = str(int(x)) if t.integer and math.isfinite(x) and x.is_integer() else repr(x)
    want = math.isfinite(x) and (not t.integer or x.is_integer()) and t.contains(x)
    assert accepts(t, text) == want, (t, text)


@pytest.mark.parametrize("t", KINDS, ids=IDS)
def test_bounds_and_declared_outside_values(t: Number) -> None:
    for text in t.outside():
        assert not accepts(t, text), (t, text)
    if t.lo is not None:
        assert accepts(t, repr(t.lo) if not t.integer else str(int(t.lo))) == (not t.lo_open)
    if t.hi is not None:
        assert accepts(t, repr(t.hi) if not t.integer else str(int(t.hi))) == (not t.hi_open)
    assert accepts(t, "0") == t.contains(0.0)


@given(st.text(max_size=12))
@settings(max_examples=100, deadline=None)
def test_garbage_text_never_raises_anything_else(text: str) -> None:
    for t in KINDS:
        try:
            v = t(text)
        except argparse.ArgumentTypeError as e:
            assert "\n" not in str(e)
        else:
            assert math.isfinite(v) and t.contains(float(v))


def test_port_zero_only_when_allowed_and_message_names_the_range() -> None:
    assert argtypes.port(allow_zero=True)("0") == 0
    with pytest.raises(argparse.ArgumentTypeError, match=r"\[1, 65535\]"):
        argtypes.port()("0")
    with pytest.raises(argparse.ArgumentTypeError, match="finite number in"):
        argtypes.seconds()("nan")


@pytest.mark.parametrize("text,ok", [
    ("http://127.0.0.1:8765/gamma", True), ("https://gamma-api.polymarket.com/", True),
    ("notaurl", False), ("http://", False), ("ftp://x/y", False), ("http://x:99999/", False),
    ("ws://127.0.0.1:1/ws", False), ("", False), ("http//x", False)])
def test_http_url(text: str, ok: bool) -> None:
    if ok:
        assert not argtypes.http_url(text).endswith("/")
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            argtypes.http_url(text)


def test_ws_url() -> None:
    assert argtypes.ws_url("wss://ws-live-data.polymarket.com") == "wss://ws-live-data.polymarket.com"
    for bad in ("http://x/ws", "notaurl", "ws://"):
        with pytest.raises(argparse.ArgumentTypeError):
            argtypes.ws_url(bad)


def test_paths(tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert argtypes.existing_file(str(f)) == f
    assert argtypes.existing_dir(str(tmp_path)) == tmp_path
    assert argtypes.output_dir(str(tmp_path / "new" / "deeper")) == tmp_path / "new" / "deeper"
    assert argtypes.output_file(str(tmp_path / "new" / "out.parquet"))
    bad = [(argtypes.existing_file, str(tmp_path / "missing")), (argtypes.existing_file, str(tmp_path)),
           (argtypes.existing_dir, str(f)), (argtypes.existing_dir, str(tmp_path / "missing")),
           (argtypes.output_dir, str(f)), (argtypes.output_dir, "/proc/nope"),
           (argtypes.output_dir, str(f / "sub")), (argtypes.output_file, str(tmp_path)),
           (argtypes.output_file, "/proc/x.parquet"), (argtypes.output_file, str(f / "x.json")),
           (argtypes.output_file, "/sys/x")]
    for kind, text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: os.access is always true")
def test_unwritable_dir_for_a_user(tmp_path: Path) -> None:  # pragma: no cover - CI runs as root
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(argparse.ArgumentTypeError, match="not writable"):
        argtypes.output_dir(str(ro / "x"))


def test_log_level() -> None:
    assert argtypes.log_level("debug") == "DEBUG"
    with pytest.raises(argparse.ArgumentTypeError):
        argtypes.log_level("loud")


def test_one_line_parser(capsys) -> None:
    p = argtypes.OneLineParser(prog="slotml x")
    p.add_argument("--n", type=argtypes.count(1, 5), required=True)
    with pytest.raises(SystemExit) as ei:
        p.parse_args(["--n", "nan"])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("slotml x: error: argument --n:")
    with pytest.raises(SystemExit):
        p.parse_args([])
    assert capsys.readouterr().err.count("\n") == 1
