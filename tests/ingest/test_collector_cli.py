"""`slotml collect` / `slotml rederive` argument handling: operator errors are one line, exit 2."""

from __future__ import annotations

import pytest

from slotml.cli import build_parser, main
from slotml.ingest.config import REAL_CLOB_WS_URL, config_from_args


def test_defaults_are_the_real_venue_and_env_overrides(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("SLOTML_CLOB_WS_URL", raising=False)
    monkeypatch.setenv("SLOTML_GAMMA_URL", "http://127.0.0.1:1/gamma/")
    args = build_parser().parse_args(["collect", "--data-dir", str(tmp_path)])
    cfg = config_from_args(args)
    assert cfg.clob_ws_url == REAL_CLOB_WS_URL
    assert cfg.gamma_url == "http://127.0.0.1:1/gamma"  # base prefix, no trailing slash
    assert (cfg.family, cfg.window_s, cfg.snapshot_interval, cfg.health_port) == ("15m", 900, 30, 9108)
    assert cfg.symbols == ("BTC", "ETH", "SOL", "XRP") and cfg.raw_dir is None
    args = build_parser().parse_args(["collect", "--gamma-url", "http://x/g", "--family", "5s",
                                      "--symbols", "btc, eth", "--health-port", "0"])
    cfg = config_from_args(args)
    assert cfg.gamma_url == "http://x/g" and cfg.window_s == 5 and cfg.symbols == ("BTC", "ETH")
    assert cfg.lookahead >= 3


def test_several_families_all_symbols_and_a_time_scale(tmp_path) -> None:
    args = build_parser().parse_args(["collect", "--family", "5m,15m,1h,4h,1d", "--symbols",
                                      "all", "--time-scale", "60", "--snapshots-per-window", "30"])
    cfg = config_from_args(args)
    assert cfg.fams == ("5m", "15m", "1h", "4h", "1d") and cfg.family == "5m"
    assert cfg.all_symbols and cfg.symbols == ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "HYPE",
                                               "ZEC")
    assert [cfg.length(f) for f in cfg.fams] == [5, 15, 60, 240, 1440]
    assert [cfg.cadence(f) for f in cfg.fams] == [5 / 30, 0.5, 2.0, 8.0, 48.0]
    assert cfg.boundary_s == 5 and cfg.candles == ("1h", "1m")  # Binance klines for 1h and 1d
    one = config_from_args(build_parser().parse_args(["collect"]))
    assert one.fams == ("15m",) and one.candles == () and one.cadence("15m") == 30.0
    assert one.boundary_s == 900


@pytest.mark.parametrize("argv,msg", [
    (["collect", "--family", "15x"], "--family"),
    (["collect", "--family", "5m,5m"], "--family"),
    (["collect", "--family", "5s,15m", "--time-scale", "60"], "time scale applies"),
    (["collect", "--family", "15m", "--time-scale", "7"], "must divide 300"),
    (["collect", "--symbols", " , "], "--symbols"),
    (["collect", "--snapshot-interval", "0"], "--snapshot-interval"),
    (["collect", "--health-port", "70000"], "--health-port"),
    (["rederive", "/nonexistent/raw"], "does not exist"),
])
def test_operator_errors_are_one_line(argv, msg, capsys, tmp_path) -> None:
    db = ["--db", f"sqlite:///{tmp_path}/x.db"]
    assert main([*argv, *db]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]


async def test_health_server_port_in_use_raises_cleanly() -> None:
    import socket

    from slotml.ingest.health import HealthServer
    from slotml.ingest.metrics import Metrics, prometheus_text

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        h = HealthServer(port, lambda: (True, {}), lambda: prometheus_text(Metrics(), {}))
        with pytest.raises(OSError):
            await h.start()
        await h.stop()


def test_prometheus_text_format() -> None:
    from slotml.ingest.metrics import Metrics, prometheus_text

    m = Metrics()
    m.inc("frames_rejected", stream="clob", reason='bad "x"')
    m.inc("frames_rejected", stream="clob", reason='bad "x"')
    text = prometheus_text(m, {"windows_tracked": 3, "none": None})
    assert '# TYPE slotml_frames_rejected_total counter' in text
    assert 'slotml_frames_rejected_total{reason="bad \\"x\\"",stream="clob"} 2' in text
    assert "slotml_windows_tracked 3" in text and "none" not in text
