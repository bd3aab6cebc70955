"""The regime shift (sim/shift.py, issue 20): off = the world unchanged; on = unchanged before the
shift second, the settlement TWAP lagged after it, the oracle still the truth and the served world
still equal to the backfilled one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slotml.cli import main
from slotml.sim.backfill import generate
from slotml.sim.config import SimConfig
from slotml.sim.oracle import known_sum, p_up
from slotml.sim.shift import SHIFT_LAG_S, Shift, shift_second
from slotml.sim.world import World

END = 1795000000  # floored to the window by the generator
T_END = END // 900 * 900
DAYS = 0.5
T_START = T_END - int(DAYS * 86400)
AT = T_START + 6 * 3600  # the shift second: 6 h into the history
SYMS = ("BTC", "ETH")


def _gen(**kw):
    return generate(SimConfig(seed=21, symbols=SYMS, **kw), days=DAYS, end=END)


@pytest.fixture(scope="module")
def off():
    return _gen()


@pytest.fixture(scope="module")
def lag():
    return _gen(shift="lag", shift_at=AT)


def test_off_and_a_shift_after_the_end_change_nothing(off) -> None:
    for other in (_gen(shift="none"), _gen(shift="lag", shift_at=T_END + 900)):
        assert other.snapshots == off.snapshots and other.resolutions == off.resolutions
        assert other.oracle == off.oracle and other.trades == off.trades


def test_identical_before_the_shift_different_after(off, lag) -> None:
    def before(rows, key="slot_ts"):
        return [r for r in rows if r[key] < AT]

    assert before(lag.snapshots) == before(off.snapshots)
    assert before(lag.resolutions) == before(off.resolutions)
    assert before(lag.trades) == before(off.trades)
    o_off = {k: [v for v, s in zip(vs, off.oracle["slot_ts"], strict=True) if s < AT] for k, vs in off.oracle.items()}
    o_lag = {k: [v for v, s in zip(vs, lag.oracle["slot_ts"], strict=True) if s < AT] for k, vs in lag.oracle.items()}
    assert o_lag == o_off and len(o_off["p_up"]) > 1000
    after_off = [r for r in off.snapshots if r["tick_ms"] > (AT + 60) * 1000]
    after_lag = [r for r in lag.snapshots if r["tick_ms"] > (AT + 60) * 1000]
    assert len(after_off) == len(after_lag) > 1000
    # spot is the same path; the published TWAP (and so the settlement move) is not
    assert all(a["chainlink_price"] == b["chainlink_price"] for a, b in zip(after_off, after_lag, strict=True))
    assert sum(a["chainlink_twap"] != b["chainlink_twap"] for a, b in zip(after_off, after_lag, strict=True)) \
        == len(after_off)


def test_served_world_equals_backfill_and_settles_on_the_lagged_twap(lag) -> None:
    cfg = SimConfig(seed=21, symbols=SYMS, shift="lag", shift_at=AT)
    world = World(cfg)
    for r in lag.snapshots[::41]:
        m = world.market(r["symbol"], r["slot_ts"])
        t = r["tick_ms"] // 1000
        up, _ = world.book_levels(m, t)
        assert r["bid_up"] == (up["bids"][0][0] / 100 if up["bids"] else None)
        path = world.path(r["symbol"])
        assert r["chainlink_twap"] == path.twap_at(t - 2)
        if t - 2 > AT:  # the published TWAP is the 60 s TWAP of SHIFT_LAG_S seconds earlier
            spot = path.spot(t - 2 - SHIFT_LAG_S - 59, t - 2 - SHIFT_LAG_S)
            assert r["chainlink_twap"] == pytest.approx(spot.mean(), rel=1e-12)
    for i in range(0, len(lag.oracle["p_up"]), 97):
        m = world.market(lag.oracle["symbol"][i], lag.oracle["slot_ts"][i])
        assert lag.oracle["p_up"][i] == pytest.approx(
            world.window(m).oracle_at(lag.oracle["tick_ms"][i] // 1000), abs=1e-12)
    for x in lag.resolutions[::7]:
        wd = world.window(world.market(x["symbol"], x["slot_ts"]))
        path = world.path(x["symbol"])
        assert x["price_to_beat"] == wd.p2b == path.twap_at(x["slot_ts"])
        if "final_price" in x:
            assert x["final_price"] == wd.final == path.twap_at(x["end_ts"])
    # the first shifted window: the base unlagged (stamped at the shift second), the final lagged
    wd = world.window(world.market("BTC", AT))
    path = world.path("BTC")
    assert wd.p2b == pytest.approx(path.spot(AT - 59, AT).mean(), rel=1e-12)
    assert wd.final == pytest.approx(path.spot(AT + 900 - SHIFT_LAG_S - 59, AT + 900 - SHIFT_LAG_S).mean(), rel=1e-12)
    # decided SHIFT_LAG_S before the end: the oracle is 0 or 1 from then on, and right
    assert set(np.unique(wd.oracle[900 - SHIFT_LAG_S:])) == {float(wd.up)}


@pytest.mark.parametrize("kind, seed, ratio, plain_sharper", [
    ("lag", 22, 0.985, False),  # measured 0.1102 vs 0.1132: the plain rule is underconfident
    ("backload", 23, 0.995, True),  # measured 0.2280 vs 0.2306: the plain rule is overconfident
])
def test_the_oracle_knows_the_shift(kind: str, seed: int, ratio: float, plain_sharper: bool) -> None:
    """After the shift the oracle prices the new rule (the window decided SHIFT_LAG_S early, or
    the backloaded variance); the unshifted rule on the same window (same base, spot and known
    TWAP sum) is what a model frozen before the shift believes. On the shifted outcomes the
    oracle is calibrated and clearly better."""
    at = T_END - 3 * 86400
    world = World(SimConfig(seed=seed, shift=kind, shift_at=at))
    ts_rel = np.arange(300, 601, 30)  # minutes 5-10: where the decision points are
    p_new, p_old, y = [], [], []
    for start in range(at, T_END - 900, 900):
        for sym in world.symbols:
            m = world.market(sym, start)
            wd = world.window(m)
            path = world.path(sym)
            v, lam, jvar = path.block_stats(start)
            ts = start + ts_rel
            p_old.append(p_up(rule="twap60", spot_t=wd.spot[ts - wd.spot_t0], m=(m.end - ts).astype(float),
                              v=v, lam=lam, jvar=jvar, p2b=wd.p2b,
                              known_sum=known_sum(wd.spot, wd.spot_t0, ts, m.end)))
            p_new.append(wd.oracle[ts_rel])
            y.append(np.full(len(ts), float(wd.up)))
    p_new, p_old, y = np.concatenate(p_new), np.concatenate(p_old), np.concatenate(y)
    assert len(y) > 10000
    b_new, b_old = np.mean((p_new - y) ** 2), np.mean((p_old - y) ** 2)
    print(f"{kind}: post-shift Brier, minutes 5-10: oracle {b_new:.4f}, the unshifted rule's {b_old:.4f}")
    assert b_new < ratio * b_old, (b_new, b_old)
    assert (np.mean(np.abs(p_old - 0.5)) > np.mean(np.abs(p_new - 0.5))) == plain_sharper
    assert abs(np.mean(p_new) - np.mean(y)) < 0.03  # calibrated in the large
    for lo, hi in ((0.05, 0.3), (0.3, 0.7), (0.7, 0.95)):  # and in three bins
        b = (p_new >= lo) & (p_new < hi)
        assert abs(np.mean(p_new[b]) - np.mean(y[b])) < 0.06, (lo, hi)  # ~400 windows per bin


def test_unlag_is_the_lagged_world_before_and_the_plain_world_after(off) -> None:
    """--shift unlag: up to the shift second the world of a lag that began before the history,
    after it the unshifted world (windows starting after the shift are byte-identical to it);
    the served world still equals the backfilled one, oracle included."""
    un = _gen(shift="unlag", shift_at=AT)
    lagged = _gen(shift="lag", shift_at=T_START - 3600)  # lagged throughout the history

    def part(rows, keep, key="slot_ts"):
        return [r for r in rows if keep(r[key])]

    def oracle(g, keep):
        return {k: [v for v, s in zip(vs, g.oracle["slot_ts"], strict=True) if keep(s)] for k, vs in g.oracle.items()}

    after, before = (lambda s: s > AT), (lambda s: s + 900 <= AT)
    assert part(un.snapshots, after) == part(off.snapshots, after) and len(part(off.snapshots, after)) > 1000
    def res(g):  # the first window after the shift carries the shifted one's outcome
        return [{k: v for k, v in r.items() if k != "prev_resolved_up" or r["slot_ts"] > AT + 900}
                for r in part(g.resolutions, after)]

    assert res(un) == res(off)
    assert oracle(un, after) == oracle(off, after)
    assert part(un.snapshots, before) == part(lagged.snapshots, before)
    assert part(un.resolutions, before) == part(lagged.resolutions, before)
    assert oracle(un, before) == oracle(lagged, before) and len(oracle(un, before)["p_up"]) > 1000
    assert part(un.snapshots, before) != part(off.snapshots, before)
    world = World(SimConfig(seed=21, symbols=SYMS, shift="unlag", shift_at=AT))
    for r in un.snapshots[::53]:
        t = r["tick_ms"] // 1000
        assert r["chainlink_twap"] == world.path(r["symbol"]).twap_at(t - 2)
    for i in range(0, len(un.oracle["p_up"]), 89):
        m = world.market(un.oracle["symbol"][i], un.oracle["slot_ts"][i])
        assert un.oracle["p_up"][i] == pytest.approx(
            world.window(m).oracle_at(un.oracle["tick_ms"][i] // 1000), abs=1e-12)
    # the window starting at the shift second: its base lagged (stamped at the shift second),
    # its final not; decided at its end
    wd, path = world.window(world.market("BTC", AT)), world.path("BTC")
    assert wd.p2b == pytest.approx(path.spot(AT - SHIFT_LAG_S - 59, AT - SHIFT_LAG_S).mean(), rel=1e-12)
    assert wd.final == pytest.approx(path.spot(AT + 900 - 59, AT + 900).mean(), rel=1e-12)


def test_shift_helpers() -> None:
    assert shift_second(1000 * 900 + 1, 1, 900) == 1000 * 900 + 86400 + 900  # rounded up
    assert shift_second(1000 * 900, 0.5, 900) == 1000 * 900 + 43200
    s = Shift("lag", 100)
    assert s.lag(100) == 0 and s.lag(101) == SHIFT_LAG_S
    assert s.lag(np.array([99, 100, 101])).tolist() == [0, 0, SHIFT_LAG_S]
    assert Shift().lag(np.array([5, 6])).tolist() == [0, 0] and not Shift().active
    assert Shift().spot_from(1000, 5000) == 941 and s.spot_from(0, 100) == -59
    assert s.spot_from(0, 500) == 101 - SHIFT_LAG_S - 59 and s.spot_from(400, 500) == 400 - SHIFT_LAG_S - 59
    u = Shift("unlag", 100)
    assert u.lag(100) == SHIFT_LAG_S and u.lag(101) == 0
    assert u.lag(np.array([99, 100, 101])).tolist() == [SHIFT_LAG_S, SHIFT_LAG_S, 0]
    assert u.spot_from(0, 500) == -SHIFT_LAG_S - 59 and u.spot_from(101, 500) == 101 - 59
    assert u.lagged_between(100, 101) and not u.lagged_between(101, 900)
    assert s.lagged_between(100, 101) and not s.lagged_between(0, 100)


@pytest.mark.parametrize("extra, needle", [
    (["--shift", "lag"], "needs --shift-day"),
    (["--shift-day", "0.1"], "--shift-day needs --shift lag"),
    (["--shift", "lag", "--shift-day", "0.3"], "not inside the history"),
    (["--shift", "lag", "--shift-day", "0.1", "--settlement", "spot"], "needs --settlement twap60"),
    (["--shift", "drift", "--shift-day", "0.1"], "invalid choice"),
    (["--shift", "lag", "--shift-day", "-1"], "--shift-day"),
    (["--shift", "backload", "--shift-day", "0.1", "--family", "5m"], "needs the 15m family alone"),
])
def test_bad_shift_options_exit_2_with_one_line(tmp_path: Path, capsys, extra, needle) -> None:
    args = ["sim", "backfill", "--days", "0.2", "--end", str(END), "--db", f"sqlite:///{tmp_path}/x.db",
            "--data-dir", str(tmp_path), "--log-level", "WARNING", *extra]
    try:
        rc = main(args)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    assert rc == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not ln.startswith("usage")]
    assert len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize("kind", ["lag", "backload"])
def test_cli_backfill_with_a_shift(tmp_path: Path, capsys, kind: str) -> None:
    db = f"sqlite:///{tmp_path}/x.db"
    args = ["sim", "backfill", "--days", "0.1", "--end", str(END), "--symbols", "BTC", "--db", db,
            "--data-dir", str(tmp_path), "--log-level", "WARNING", "--shift", kind, "--shift-day", "0.05"]
    assert main(args) == 0
    assert "backfilled" in capsys.readouterr().out


def test_serve_anchors_the_shift_on_its_start() -> None:
    from slotml.cli import build_parser
    from slotml.sim import cli as sim_cli

    args = build_parser().parse_args(["sim", "serve", "--shift", "lag", "--shift-day", "0.5", "--family", "5m"])
    cfg = sim_cli._config(args, 1_000_000.0)
    assert cfg.shift == "lag" and cfg.shift_at == shift_second(1_000_000.0, 0.5, 300) == 1_043_400
    assert World(cfg).shift.lag(cfg.shift_at + 1) == SHIFT_LAG_S
