"""sim/touch.py against the plain definition: per tick g, the lowest ask / highest bid (cents,
0 = empty, never the extreme) over the books on display at seconds g - step .. g, where every
second before the window's start shows book 0."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from slotml.sim.touch import touch_ranges

START = 1_000_000


def _plain(books, ticks: list[int], step: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    n = len(books.up_ask)
    for col, attr, lowest in (("ask_up_low", "up_ask", True), ("bid_up_high", "up_bid", False),
                              ("ask_down_low", "down_ask", True), ("bid_down_high", "down_bid", False)):
        a = getattr(books, attr)
        vals = []
        for g in ticks:
            seen = [int(a[min(max(s - START + 1, 0), n - 1)]) for s in range(g - step, g + 1)]
            seen = [c for c in seen if c > 0]
            vals.append(float(min(seen) if lowest else max(seen)) if seen else 0.0)
        out[col] = vals
    return out


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 40), step=st.integers(1, 12), data=st.data())
def test_touch_ranges_are_the_plain_min_and_max(n: int, step: int, data) -> None:
    cents = st.lists(st.sampled_from([0, 1, 5, 37, 50, 63, 99]), min_size=n, max_size=n)
    books = SimpleNamespace(**{k: np.array(data.draw(cents), dtype=np.int16)
                               for k in ("up_ask", "up_bid", "down_ask", "down_bid")})
    # ticks inside the window (books index 1 + s - START; the last index is after its end)
    ticks = sorted(data.draw(st.sets(st.integers(START - 3, START + n - 2), min_size=1, max_size=8)))
    got = touch_ranges(books, START, np.array(ticks), step)
    want = _plain(books, ticks, step)
    assert {k: v.tolist() for k, v in got.items()} == want
