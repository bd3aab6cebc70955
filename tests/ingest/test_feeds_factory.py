"""The feed factory: ``--price-source`` picks the price feed; ``prices=`` replaces it (tests)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from slotml.cli import build_parser, main
from slotml.errors import UserError
from slotml.ingest.config import CollectorConfig, config_from_args
from slotml.ingest.feeds.factory import build_feeds, build_price_source
from slotml.ingest.feeds.rtds import RtdsRelay
from slotml.ingest.metrics import Metrics
from slotml.settings import CommonSettings, DbUrl


def config(tmp_path: Path, **kw) -> CollectorConfig:
    common = CommonSettings(data_dir=tmp_path, db=DbUrl(scheme="sqlite", path=tmp_path / "s.db"))
    return CollectorConfig(common=common, family="5m", symbols=("BTC",), **kw)


def test_relay_is_the_default_price_source(tmp_path: Path) -> None:
    args = build_parser().parse_args(["collect", "--data-dir", str(tmp_path)])
    assert config_from_args(args).price_source == "relay"
    args = build_parser().parse_args(["collect", "--price-source", "relay"])
    assert config_from_args(args).price_source == "relay"
    feeds = build_feeds(config(tmp_path), Metrics())
    assert isinstance(feeds.prices, RtdsRelay) and feeds.clob.books is feeds.books
    assert feeds.prices.prices.series[("BTC", "spot")].boundary_ms == 300_000


def test_unknown_price_source(tmp_path: Path, capsys) -> None:
    assert main(["collect", "--price-source", "nope"]) == 2  # argparse's choices: one line, 2
    err = capsys.readouterr().err
    assert "--price-source" in err and err.count("\n") == 1
    with pytest.raises(UserError, match="price source 'nope'"):
        build_price_source(dataclasses.replace(config(tmp_path), price_source="nope"), Metrics())


def test_a_given_price_source_replaces_the_configured_one(tmp_path: Path) -> None:
    mine = RtdsRelay("ws://127.0.0.1:1", ("BTC",), Metrics())
    assert build_feeds(config(tmp_path), Metrics(), prices=mine).prices is mine


def test_the_tape_is_on_unless_no_trades_or_a_sink_without_it(tmp_path: Path) -> None:
    class Writer:
        def put_trade(self, _row) -> None: ...
        def put_tape_gap(self, _row) -> None: ...

    feeds = build_feeds(config(tmp_path), Metrics(), writer=Writer())
    assert feeds.tape is not None and feeds.clob.tape is feeds.tape
    assert build_feeds(config(tmp_path, trades=False), Metrics(), writer=Writer()).tape is None
    assert build_feeds(config(tmp_path), Metrics(), writer=object()).tape is None  # serve's sink
    args = build_parser().parse_args(["collect", "--no-trades"])
    assert config_from_args(args).trades is False
    assert config_from_args(build_parser().parse_args(["collect"])).trades is True
