"""Every command's every numeric, URL and path option, fuzzed in-process through ``main()``.

The parsers are walked, not listed by hand: a new option without an ``argtypes`` type fails
``test_every_numeric_option_has_a_ranged_type``. Each out-of-range, non-finite, garbage or bad
path value must give exit code 2 and ONE line on stderr naming the option, never a traceback.
Handlers are replaced by a tripwire, so a value that slipped through fails the test instead of
starting a daemon.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import slotml.cli
from slotml import argtypes, demo
from slotml.argtypes import Number

PATH_TYPES = {argtypes.existing_file, argtypes.existing_dir, argtypes.output_dir,
              argtypes.output_file}
URL_TYPES = {argtypes.http_url, argtypes.ws_url}
TEXT_TYPES = {argtypes.window_fraction, argtypes.window_fractions, argtypes.time_text,
              argtypes.day_text, argtypes.log_level}


def _tripwire(args: argparse.Namespace) -> int:
    raise AssertionError(f"bad input reached the handler of {args.command}: {vars(args)}")


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
              ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every leaf command (argv prefix, its parser); an alias is visited once."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    seen: set[int] = set()
    for name, p in subs[0].choices.items():
        if id(p) not in seen:
            seen.add(id(p))
            yield from _commands(p, (*prefix, name))


def _parser() -> argparse.ArgumentParser:
    p = slotml.cli.build_parser()
    for cmd, leaf in _commands(p):
        if cmd != ("demo",):  # demo parses its own flags: its first stage is the tripwire
            leaf.set_defaults(func=_tripwire)
    return p


PARSER = _parser()
LEAVES = [(cmd, p) for cmd, p in _commands(PARSER) if cmd != ("demo",)]
DEMO = demo.build_parser()


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.option_strings and a.type is not None]


def _cases(kinds: set | type) -> list[tuple[tuple[str, ...], str, object]]:
    out = []
    for cmd, p in [*LEAVES, (("demo", "--"), DEMO)]:
        for a in _options(p):
            if (isinstance(a.type, kinds) if isinstance(kinds, type) else a.type in kinds):
                out.append((cmd, a.option_strings[-1], a.type))
    return out


NUMERIC = _cases(Number)
PATHS = _cases(PATH_TYPES)
URLS = _cases(URL_TYPES)
TEXTS = _cases(TEXT_TYPES)


def _positionals(cmd: tuple[str, ...], p: argparse.ArgumentParser, tmp: Path) -> list[str]:
    out = []
    for a in p._actions:
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction) \
                and a.nargs != argparse.REMAINDER:
            out.append(str(tmp) if a.type is argtypes.existing_dir else "select 1")
    return out


@pytest.fixture(autouse=True)
def _cached_parser(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # relative defaults (./data/demo) point into the test's folder
    monkeypatch.setattr(slotml.cli, "build_parser", lambda: PARSER)
    monkeypatch.setattr(demo, "build_parser", lambda: DEMO)
    monkeypatch.setattr(demo, "live_stage", lambda *a: _tripwire(argparse.Namespace(command="demo")))


def _run(cmd: tuple[str, ...], opt: str, value: str, tmp: Path, capsys) -> str:
    leaf = dict(LEAVES).get(cmd)
    pos = _positionals(cmd, leaf, tmp) if leaf is not None else []
    capsys.readouterr()
    code = slotml.cli.main([*cmd, *pos, f"{opt}={value}"])
    err = capsys.readouterr().err
    assert code == 2, (cmd, opt, value, err)
    assert "Traceback" not in err and err.count("\n") == 1, (cmd, opt, value, err)
    assert opt in err and ": error: " in err, (cmd, opt, value, err)
    return err


def test_the_walk_sees_every_command() -> None:
    names = {" ".join(c) for c, _p in LEAVES}
    assert {"collect", "rederive", "db init", "db schema", "export", "sql", "features", "train",
            "backtest", "api", "dashboard", "sim serve", "sim backfill"} <= names
    assert len(NUMERIC) >= 50 and len(PATHS) >= 15 and len(URLS) == 6 and len(TEXTS) >= 15


def test_every_numeric_option_has_a_ranged_type() -> None:
    """No bare int/float anywhere; every numeric default lies inside its declared range."""
    for cmd, p in [*LEAVES, (("demo",), DEMO)]:
        for a in p._actions:
            if not a.option_strings or isinstance(a, argparse._HelpAction):
                continue
            where = f"{' '.join(cmd)} {a.option_strings[-1]}"
            assert a.type not in (int, float), f"{where}: use a slotml.argtypes type"
            d = a.default
            if isinstance(d, int | float) and not isinstance(d, bool) and a.const is None:
                assert isinstance(a.type, Number), f"{where}: numeric default without a type"
                assert a.type.contains(float(d)), f"{where}: default {d} outside {a.type.range_text()}"


@pytest.mark.parametrize("cmd,opt,t", NUMERIC, ids=[f"{' '.join(c)} {o}" for c, o, _ in NUMERIC])
def test_each_numeric_option_refuses_its_outside(cmd, opt, t: Number, tmp_path, capsys) -> None:
    for value in ("nan", "inf", "-1e999", "garbage", *t.outside()[-3:]):
        _run(cmd, opt, value, tmp_path, capsys)


def _outside_floats(t: Number) -> st.SearchStrategy[str]:
    parts = [st.sampled_from(t.outside()), st.text(max_size=8).filter(lambda s: not _ok(t, s))]
    if t.lo is not None:
        parts.append(st.floats(max_value=t.lo, exclude_max=not t.lo_open, allow_nan=False)
                     .filter(lambda x: not t.contains(x)).map(repr))
    if t.hi is not None:
        parts.append(st.floats(min_value=t.hi, exclude_min=not t.hi_open, allow_nan=False)
                     .filter(lambda x: not t.contains(x)).map(repr))
    return st.one_of(parts)


def _ok(t: Number, text: str) -> bool:
    try:
        t(text)
    except argparse.ArgumentTypeError:
        return False
    return True


@st.composite
def numeric_case(draw) -> tuple[tuple[str, ...], str, str]:
    cmd, opt, t = draw(st.sampled_from(NUMERIC))
    return cmd, opt, draw(_outside_floats(t))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=numeric_case())
def test_hypothesis_out_of_range_numbers(case, tmp_path, capsys) -> None:
    cmd, opt, value = case
    _run(cmd, opt, value, tmp_path, capsys)


def _bad_paths(t, tmp: Path) -> list[str]:
    f = tmp / "a-file"
    f.write_text("x")
    if t is argtypes.existing_file:
        return [str(tmp / "missing"), str(tmp), "/proc/nope/x"]
    if t is argtypes.existing_dir:
        return [str(tmp / "missing"), str(f), "/proc/nope"]
    if t is argtypes.output_dir:
        return [str(f), str(f / "sub"), "/proc/nope", "/sys/nope"]
    return [str(tmp), str(f / "x.out"), "/proc/nope.out", "/sys/x.out"]  # output_file


@pytest.mark.parametrize("cmd,opt,t", PATHS, ids=[f"{' '.join(c)} {o}" for c, o, _ in PATHS])
def test_each_path_option_refuses_bad_paths(cmd, opt, t, tmp_path, capsys) -> None:
    for value in _bad_paths(t, tmp_path):
        _run(cmd, opt, value, tmp_path, capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output(tmp_path, capsys) -> None:  # pragma: no cover - CI runs as root
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    _run(("export",), "--lake", str(ro / "lake"), tmp_path, capsys)


@pytest.mark.parametrize("cmd,opt,t", URLS, ids=[f"{' '.join(c)} {o}" for c, o, _ in URLS])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.sampled_from(["notaurl", "http://", "ftp://x/y", "http://x:99999/", "ws//x"])
       | st.text(alphabet="abc:/.%", max_size=10))
def test_each_url_option_refuses_garbage(cmd, opt, t, value, tmp_path, capsys) -> None:
    if _accepts(t, value):
        return
    _run(cmd, opt, value, tmp_path, capsys)


def _accepts(t, value: str) -> bool:
    try:
        t(value)
    except argparse.ArgumentTypeError:
        return False
    return True


@pytest.mark.parametrize("cmd,opt,t", TEXTS, ids=[f"{' '.join(c)} {o}" for c, o, _ in TEXTS])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.sampled_from(["nan", "inf", "1e999", "-1/15", "5/0", "15/15", "0", "1e999/2",
                              "2026-13-45", "garbage", "", "99999999999999999999", ","])
       | st.text(max_size=8))
def test_each_parsed_text_option_refuses_garbage(cmd, opt, t, value, tmp_path, capsys) -> None:
    if _accepts(t, value):
        return
    _run(cmd, opt, value, tmp_path, capsys)


def test_argparse_own_errors_are_one_line_too(capsys) -> None:
    for argv in (["collect", "--nope"], ["collect", "--price-source", "x"], ["sql"], ["nocommand"],
                 ["collect", "--stale-after"], ["db"]):
        capsys.readouterr()
        assert slotml.cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, (argv, err)


# The inputs issue 19 found (each failed on the main of 2026-12-05: tracebacks, a spin, silent
# data loss or a wrong result); now each is one line and exit 2 before any work starts.
ISSUE_19 = [
    (["collect", "--discovery-interval", "nan"], "--discovery-interval"),  # 84 MB of tracebacks
    (["collect", "--spool-max-mb", "-1"], "--spool-max-mb"),  # 80% of rows dropped
    (["collect", "--stale-after", "nan"], "--stale-after"),  # every book NULLed, /health 200
    (["collect", "--lookahead", "-5"], "--lookahead"),  # nothing collected, no warning
    (["collect", "--snapshot-interval", "nan"], "--snapshot-interval"),
    (["collect", "--gamma-url", "notaurl"], "--gamma-url"),  # retried forever, INFO only
    (["sql", "select 1", "--max-rows", "-1"], "--max-rows"),
    (["export", "--lake", "/proc/nope"], "--lake"),
    (["sim", "serve", "--port", "70000"], "--port"),
    (["api", "--port", "70000"], "--port"),
    (["train", "--points", "1e999"], "--points"),  # found by this fuzz: OverflowError
    (["sim", "backfill", "--end", "nan"], "--end"),  # found by this fuzz: ValueError
]


@pytest.mark.parametrize("argv,opt", ISSUE_19, ids=[" ".join(a) for a, _ in ISSUE_19])
def test_issue_19_inputs(argv: list[str], opt: str, capsys) -> None:
    assert slotml.cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and opt in err and "Traceback" not in err
