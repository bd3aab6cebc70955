"""The PolyBolt feed against the sim: credentials (file mode, environment, masking), the
start-up 4001 exit, a later 4001 without a reconnect storm, 4002/4003/4008, seq gaps and the
64-subscription split."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from slotml.cli import build_parser, main
from slotml.errors import UserError
from slotml.ingest.config import config_from_args
from slotml.ingest.credentials import load_credentials
from slotml.ingest.feeds.polybolt import MAX_SUBSCRIPTIONS, PolyBolt, PolyBoltConn
from slotml.ingest.metrics import Metrics
from slotml.settings import log_config
from slotml.sim.config import SimConfig
from slotml.sim.runner import sim_in_thread
from tests.ingest.collector_harness import (
    CollectorThread,
    collector_config,
    get_json,
    sim_credentials,
)
from tests.util import wait_for

SECRET = "s3cr3t-do-not-print-0123456789"
ENV = ("SLOTML_POLYBOLT_KEY", "SLOTML_POLYBOLT_SECRET", "SLOTML_POLYBOLT_PASSPHRASE")


def write_creds(path: Path, mode: int, secret: str = SECRET) -> Path:
    path.write_text(json.dumps({"key": "k-1", "secret": secret, "passphrase": "p-1"}))
    path.chmod(mode)
    return path


def test_credentials_file_must_be_0600(tmp_path: Path, capsys, monkeypatch) -> None:
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    f = write_creds(tmp_path / "pb.json", 0o644)
    db = ["--db", f"sqlite:///{tmp_path}/x.db"]
    assert main(["collect", "--price-source", "polybolt", "--polybolt-credentials", str(f),
                 *db]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0644" in err[0] and "chmod 600" in err[0], err
    assert SECRET not in err[0]
    assert main(["collect", "--price-source", "auto", *db]) == 2  # none at all
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SLOTML_POLYBOLT_SECRET" in err[0]
    monkeypatch.setenv("SLOTML_POLYBOLT_KEY", "k")  # only one of three
    with pytest.raises(UserError, match="not set"):
        load_credentials(None, needed=True, source="polybolt")


def test_credentials_are_masked_where_settings_are_logged(tmp_path: Path, caplog,
                                                          monkeypatch) -> None:
    f = write_creds(tmp_path / "pb.json", 0o600)
    args = build_parser().parse_args(["collect", "--price-source", "polybolt",
                                      "--polybolt-credentials", str(f)])
    cfg = config_from_args(args)
    assert cfg.polybolt_credentials.secret == SECRET
    with caplog.at_level(logging.INFO):
        log_config(cfg)
    assert "polybolt_credentials" in caplog.text and SECRET not in caplog.text
    assert SECRET not in repr(cfg) and "p-1" not in repr(cfg) and "k-1" not in str(cfg)
    for k, v in zip(ENV, ("k-2", SECRET, "p-2"), strict=True):
        monkeypatch.setenv(k, v)
    c = load_credentials(None, needed=True, source="auto")
    assert c.auth() == {"apiKey": "k-2", "secret": SECRET, "passphrase": "p-2"}
    assert SECRET not in f"{c}{c!r}"


def test_subscriptions_split_at_64_per_connection() -> None:
    syms = tuple(f"SYN{i}" for i in range(MAX_SUBSCRIPTIONS // 2 + 8))  # 80 subscriptions
    pb = PolyBolt("ws://127.0.0.1:1", syms, Metrics(), sim_credentials_stub())
    assert [len(c.subs) for c in pb.conns] == [64, 16]
    with sim_in_thread(SimConfig(family="10s", symbols=("BTC",),
                                 synthetic_assets=len(syms))) as sim:
        cfg = collector_config(sim, Path("/nonexistent"))
        pb = PolyBolt(sim.polybolt_url, syms, Metrics(), sim_credentials(sim),
                      stall_after=cfg.stale_after, backoff_max=1.0)
        import asyncio

        async def go() -> None:
            pb.start()
            try:
                deadline = time.monotonic() + 10
                while not all(pb.latest(s, "twap60") for s in syms):
                    assert time.monotonic() < deadline, "not every asset arrived"
                    await asyncio.sleep(0.05)
            finally:
                await pb.stop()

        asyncio.run(go())
        assert pb.metrics.get("polybolt_closes") == 0  # no 4008 (limit) from the server
        assert get_json(f"{sim.control_url}/stats")[1]["stats"]["polybolt_connections"] == 2


def sim_credentials_stub():
    from slotml.ingest.credentials import Credentials

    return Credentials("k", "s", "p", origin="test")


def test_seq_gaps_and_repeats_are_counted() -> None:
    pb = PolyBolt("ws://127.0.0.1:1", ("BTC",), Metrics(), sim_credentials_stub())
    conn: PolyBoltConn = pb.conns[0]
    for seq, ts in ((1, 1000), (2, 2000), (5, 3000), (5, 4000)):
        frame = {"v": 1, "channel": "price.crypto.twap", "seq": seq, "ts": ts + 500,
                 "payload": {"symbol": "btcusd", "timestamp": 1_700_000_000_000 + ts,
                             "value": 90000.0 + seq, "full_accuracy_value": "90000.5"}}
        assert conn.on_frame(json.dumps(frame), time.time())
    m = pb.metrics
    assert (m.get("seq_gaps"), m.get("seq_missed"), m.get("seq_repeats")) == (1, 2, 1)
    assert pb.latest("BTC", "twap60").value == 90005.0


def test_an_unknown_channel_keeps_its_seq_place() -> None:
    pb = PolyBolt("ws://127.0.0.1:1", ("BTC",), Metrics(), sim_credentials_stub())
    conn: PolyBoltConn = pb.conns[0]
    for seq, channel in ((1, "price.crypto"), (2, "price.crypto.new"), (3, "price.crypto")):
        frame = {"v": 1, "channel": channel, "seq": seq, "ts": 1_700_000_000_500 + seq,
                 "payload": {"symbol": "btcusd", "timestamp": 1_700_000_000_000 + 1000 * seq,
                             "value": 90000.0}}
        conn.on_frame(json.dumps(frame), time.time())
    m = pb.metrics
    assert m.get("unknown_event_types", stream="polybolt", type="price.crypto.new") == 1
    assert (m.get("seq_gaps"), m.get("seq_repeats"), m.get("seq_missing")) == (0, 0, 0)


def test_the_sims_faults_are_counted_and_never_corrupt_the_series() -> None:
    """The relay's faults on PolyBolt: duplicates (the same frame, seq and all) and a second
    delivered late are counted, each observation kept under its own stamp; bad frames and an
    unknown channel are counted and skipped; only the truncated frame leaves a seq gap."""
    import asyncio

    from slotml.sim.services.polybolt import pyth_at

    with sim_in_thread(SimConfig(family="10s", symbols=("BTC",), seed=9)) as sim:
        m = Metrics()
        pb = PolyBolt(sim.polybolt_url, ("BTC",), m, sim_credentials(sim), stall_after=5.0,
                      backoff_max=1.0)

        async def until(pred, what: str, timeout: float = 10.0) -> None:
            deadline = time.monotonic() + timeout
            while not pred():
                assert time.monotonic() < deadline, what
                await asyncio.sleep(0.05)

        async def go() -> None:
            pb.start()
            try:
                await until(lambda: m.get("events", stream="polybolt") >= 6, "live updates")
                sim.inject("duplicate", target="polybolt", count=2)
                sim.inject("out_of_order", target="polybolt", count=1)
                await until(lambda: m.get("price_anomalies", kind="out_of_order") >= 2
                            and m.get("price_anomalies", kind="duplicate") >= 4, "the faults")
                for kind in ("unknown_event", "truncated", "malformed"):
                    sim.inject(kind, target="polybolt")
                await until(lambda: m.get("frames_rejected") >= 2, "the bad frames")
                n = m.get("events", stream="polybolt")
                await until(lambda: m.get("events", stream="polybolt") >= n + 4, "more updates")
            finally:
                await pb.stop()

        asyncio.run(go())
        emitted = sim.emitted()
        path = sim.world.path("BTC")
    assert emitted["duplicate"] == 2 and emitted["out_of_order"] == 1
    assert m.get("seq_repeats") == m.get("price_anomalies", kind="duplicate") >= 4
    assert m.get("price_anomalies", kind="conflict") == 0 and m.get("prices_rejected") == 0
    assert m.get("unknown_event_types", stream="polybolt", type="price.crypto.sim_unknown") == 1
    assert m.get("frames_rejected", stream="polybolt", reason="malformed_json") == 2
    assert (m.get("seq_gaps"), m.get("seq_missed")) == (1, 1)  # the truncated frame only
    assert pb.reconnects == 0
    for series, value in (("twap60", path.twap_at), ("spot", lambda s: pyth_at(path, s))):
        ps = pb.prices.series[("BTC", series)]
        assert len(ps.obs) > 120  # the snapshot and the live seconds
        for ts_ms, o in ps.obs.items():
            assert o.obs_ts * 1000 == ts_ms and o.value == value(ts_ms // 1000), (series, ts_ms)
        assert ps.latest.obs_ts * 1000 == max(ps.obs)  # never moved backwards


def test_a_refused_secret_at_start_up_is_one_line_exit_2(tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    with sim_in_thread(SimConfig(family="5s", symbols=("BTC",))) as sim:
        f = write_creds(tmp_path / "pb.json", 0o600)
        t0 = time.monotonic()
        code = main(["collect", "--family", "5s", "--symbols", "BTC", "--price-source",
                     "polybolt", "--polybolt-credentials", str(f), "--polybolt-ws-url",
                     sim.polybolt_url, "--rtds-ws-url", sim.rtds_url, "--gamma-url",
                     sim.gamma_url, "--clob-url", sim.clob_url, "--clob-ws-url",
                     sim.ws_market_url, "--health-port", "0",
                     "--db", f"sqlite:///{tmp_path}/x.db", "--data-dir", str(tmp_path)])
        assert time.monotonic() - t0 < 15
    out = capsys.readouterr()
    assert code == 2
    errors = [ln for ln in out.err.splitlines() if "slotml collect: error:" in ln]
    assert len(errors) == 1 and "4001" in errors[0], out.err
    assert "Traceback" not in out.err and SECRET not in out.err + out.out


def test_close_codes_reconnect_report_and_a_later_4001_does_not_storm(tmp_path: Path) -> None:
    with sim_in_thread(SimConfig(family="5s", symbols=("BTC", "ETH"))) as sim:
        cfg = collector_config(sim, tmp_path, price_source="polybolt",
                               polybolt_credentials=sim_credentials(sim))
        health = f"http://127.0.0.1:{cfg.health_port}/health"
        conns = lambda: get_json(f"{sim.control_url}/stats")[1]["stats"]["polybolt_connections"]  # noqa: E731
        with CollectorThread(cfg) as c:
            m = c.metrics
            wait_for(lambda: m.get("events", stream="polybolt") > 4, what="polybolt data")
            for code in (4002, 4003, 4008):
                before = conns()
                sim.inject("pb_close", code=code)
                wait_for(lambda c=code: m.get("polybolt_closes", stream="polybolt", code=str(c)),
                         what=f"{code} seen")
                wait_for(lambda b=before: conns() > b, timeout=5, what=f"reconnect after {code}")
                n = m.get("events", stream="polybolt")
                wait_for(lambda n=n: m.get("events", stream="polybolt") > n, what="data again")
            assert get_json(health)[0] == 200
            sim.inject("pb_revoke", duration_s=600)
            wait_for(lambda: get_json(health)[0] == 503, timeout=5, what="/health unhealthy")
            status, body = get_json(health)
            assert any("4001" in p for p in body["problems"]), body
            before = conns()
            time.sleep(3.0)  # backoff_max is 1 s: a storm would reconnect ~3+ times here
            assert conns() == before and m.get("polybolt_closes", code="4001") == 1
