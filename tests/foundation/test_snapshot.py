from __future__ import annotations

import pytest

from slotml.ingest.snapshot import BookTop, WindowRef, grid_tick_ms, make_snapshot

W = WindowRef("BTC", 900, 1767200400, "twap60", price_to_beat=100.0, spot_price_to_beat=200.0)


def test_grid_is_shared_and_floored() -> None:
    assert grid_tick_ms(1767200429.999) == 1767200400000
    assert grid_tick_ms(1767200430.0) == 1767200430000
    assert grid_tick_ms(1767200430.7, 0.5) == 1767200430500


def test_row_from_books_and_prices() -> None:
    up = BookTop(0.55, 0.56, 100, 50, 1767200729.0)
    down = BookTop(0.44, 0.45, 40, 60, 1767200725.0)
    row, rejects = make_snapshot(W, 1767200730000, 1767200730.01, up, down, spot=202.0, twap=101.0)
    assert rejects == []
    assert row["minutes_into_slot"] == 5.5
    assert row["spread_up"] == pytest.approx(0.01) and row["spread_down"] == pytest.approx(0.01)
    assert row["dir_move_pct"] == pytest.approx(1.0) and row["abs_move_pct"] == pytest.approx(1.0)
    assert row["spot_move_pct"] == pytest.approx(1.0)
    assert row["book_age_s"] == pytest.approx(5.01)
    assert (row["hour_utc"], row["day_of_week"]) == (17, 2)  # 2025-12-31 was a Wednesday


def test_spot_settlement_uses_spot_series() -> None:
    w = WindowRef("BTC", 900, 1767200400, "spot", price_to_beat=200.0, spot_price_to_beat=200.0)
    row, _ = make_snapshot(w, 1767200730000, 1767200730.0, None, None, spot=198.0, twap=101.0)
    assert row["dir_move_pct"] == pytest.approx(-1.0) and row["abs_move_pct"] == pytest.approx(1.0)


def test_empty_side_is_null_never_zero() -> None:
    row, _ = make_snapshot(W, 1767200730000, 1767200730.0, BookTop(None, 0.99, None, 5), None, None, None)
    assert row["bid_up"] is None and row["bid_size_up"] is None and row["spread_up"] is None
    assert row["ask_up"] == 0.99 and row["bid_down"] is None
    assert row["dir_move_pct"] is None and row["spot_move_pct"] is None


@pytest.mark.parametrize("top,reason", [
    (BookTop(0.6, 0.5, 1, 1), "crossed"),
    (BookTop(0.5, 0.5, 1, 1), "crossed"),
    (BookTop(0.01, 0.99, 1, 1), "ghost"),
    (BookTop(1.2, None, 1, None), "price_out_of_range"),
    (BookTop(-0.1, 0.5, 1, 1), "price_out_of_range"),
])
def test_bad_books_are_nulled_and_counted(top: BookTop, reason: str) -> None:
    good = BookTop(0.4, 0.41, 1, 1)
    row, rejects = make_snapshot(W, 1767200730000, 1767200730.0, top, good, None, None)
    assert rejects == [f"up:{reason}"]
    assert row["bid_up"] is None and row["ask_up"] is None and row["bid_down"] == 0.4


# --- depth -------------------------------------------------------------------------------------

def _depth(row: dict, token: str, side: str) -> list:
    return [(row[f"{side}_{token}_l{k}"], row[f"{side}_size_{token}_l{k}"]) for k in range(1, 6)]


def test_depth_fewer_than_five_levels_leaves_the_rest_null() -> None:
    up = BookTop(0.55, 0.56, 100, 50, bids=((0.55, 100), (0.54, 200), (0.5, 7)),
                 asks=((0.56, 50),))
    row, rejects = make_snapshot(W, 1767200730000, 1767200730.0, up, None, None, None)
    assert rejects == []
    assert _depth(row, "up", "bid") == [(0.55, 100), (0.54, 200), (0.5, 7), (None, None), (None, None)]
    assert _depth(row, "up", "ask") == [(0.56, 50)] + [(None, None)] * 4
    assert _depth(row, "down", "bid") == [(None, None)] * 5  # no book: all NULL, never 0


def test_depth_level_one_is_the_best_level() -> None:
    bids = tuple((round(0.5 - k / 100, 2), 10.0 + k) for k in range(5))
    asks = tuple((round(0.52 + k / 100, 2), 20.0 + k) for k in range(5))
    up = BookTop(0.5, 0.52, 10.0, 20.0, bids=bids, asks=asks)
    row, _ = make_snapshot(W, 1767200730000, 1767200730.0, up, up, None, None)
    for token in ("up", "down"):
        for side in ("bid", "ask"):
            assert (row[f"{side}_{token}_l1"], row[f"{side}_size_{token}_l1"]) == \
                (row[f"{side}_{token}"], row[f"{side}_size_{token}"])
    assert _depth(row, "up", "bid") == list(bids) and _depth(row, "up", "ask") == list(asks)


def test_depth_empty_side_is_all_null() -> None:
    up = BookTop(None, 0.99, None, 5, bids=(), asks=((0.99, 5),))
    row, rejects = make_snapshot(W, 1767200730000, 1767200730.0, up, None, None, None)
    assert rejects == []
    assert _depth(row, "up", "bid") == [(None, None)] * 5
    assert _depth(row, "up", "ask") == [(0.99, 5)] + [(None, None)] * 4


def test_depth_not_captured_leaves_the_columns_out() -> None:
    """No top carries levels (serve's bot, benches, a stale stream): no depth keys, stored NULL."""
    from slotml.ingest.schema import DEPTH_COLUMNS

    row, _ = make_snapshot(W, 1767200730000, 1767200730.0, BookTop(0.4, 0.41, 1, 1), None, None, None)
    assert row["bid_up"] == 0.4 and not set(DEPTH_COLUMNS) & set(row)
    row, _ = make_snapshot(W, 1767200730000, 1767200730.0, None, None, None, None)
    assert not set(DEPTH_COLUMNS) & set(row)


@pytest.mark.parametrize("top,reason", [
    (BookTop(0.6, 0.5, 1, 1, bids=((0.6, 1),), asks=((0.5, 1),)), "crossed"),
    (BookTop(0.4, 0.5, 1, 1, bids=((0.39, 1),), asks=((0.5, 1),)), "depth_mismatch"),
    (BookTop(0.4, 0.5, 1, 1, bids=((0.4, 1), (0.41, 2)), asks=((0.5, 1),)), "depth_mismatch"),
    (BookTop(0.4, 0.5, 1, 1, bids=((0.4, 1),), asks=((0.5, 1), (0.5, 2))), "depth_mismatch"),
    (BookTop(0.4, 0.5, 1, 1, bids=((0.4, 1), (0.3, 0)), asks=((0.5, 1),)), "depth_mismatch"),
])
def test_depth_of_a_rejected_book_is_null(top: BookTop, reason: str) -> None:
    row, rejects = make_snapshot(W, 1767200730000, 1767200730.0, top, None, None, None)
    assert rejects == [f"up:{reason}"] and row["bid_up"] is None
    assert _depth(row, "up", "bid") == _depth(row, "up", "ask") == [(None, None)] * 5


def test_row_carries_every_depth_column() -> None:
    from slotml.ingest.schema import DEPTH_COLUMNS, SNAPSHOTS

    row, _ = make_snapshot(W, 1767200730000, 1767200730.0, None,
                           BookTop(None, None, bids=(), asks=()), None, None)
    assert set(DEPTH_COLUMNS) <= set(row) and all(row[c] is None for c in DEPTH_COLUMNS)
    assert set(row) == {c.name for c in SNAPSHOTS.data_columns}
