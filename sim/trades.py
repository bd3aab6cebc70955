"""The prints of backfilled windows as the collector's tape stores them (``slot_trades`` rows).

Same trades as the live market channel (``World.flow``), so a backfilled window equals one
collected live on every non-timing column: ``received_at`` is a plausible receipt time (a few ms
after the print), not the live one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from slotml.sim.flow import Flow
from slotml.sim.world import Market


def trade_rows(m: Market, flow: Flow, seed: int) -> list[dict[str, Any]]:
    """``slot_trades`` rows of one window's prints, in the order the tape receives them."""
    n = len(flow)
    if n == 0:
        return []
    u = np.random.default_rng([seed & 0xFFFFFFFF, m.start, 9]).random(n)
    received = (flow.t_ms / 1000.0 + 0.003 + 0.02 * u).tolist()
    first = np.ones(n, dtype=bool)
    first[1:] = flow.frame[1:] != flow.frame[:-1]
    start_at = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    frame_index = (np.arange(n) - start_at).tolist()
    seen: Counter = Counter()
    rows = []
    tokens = (m.up_token, m.down_token)
    outcome = ("Up", "Down")
    ts, tok, side = flow.t_ms.tolist(), flow.token.tolist(), flow.side.tolist()
    cents, size = flow.cents.tolist(), flow.size.tolist()
    for i in range(n):
        token = tokens[tok[i]]
        price = cents[i] / 100
        sd = "BUY" if side[i] == 0 else "SELL"
        key = (token, ts[i], price, size[i], sd, flow.tx[i])
        occ = seen[key]
        seen[key] = occ + 1
        rows.append({"symbol": m.symbol, "window_s": m.window_s, "slot_ts": m.start,
                     "token_id": token, "outcome": outcome[tok[i]], "condition_id": m.condition_id,
                     "price": price, "size": size[i], "side": sd, "fee_rate_bps": 0.0,
                     "ts_ms": ts[i], "received_at": received[i], "tx_hash": flow.tx[i],
                     "frame_index": frame_index[i], "occurrence": occ})
    return rows
