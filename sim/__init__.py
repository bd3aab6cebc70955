"""sim/: a local Polymarket on loopback (Gamma, CLOB REST + market websocket, live-data relay).

Imported only by tests, the demo and the CLI. One aiohttp app on one port:

- ``/gamma``: ``/events/slug/{slug}``, ``/events?slug=`` (without ``closed`` only closed events,
  as the venue), ``/events?series_id=&closed=false&limit=``, ``/markets/slug/{slug}``,
  ``/markets?slug=`` (without ``closed`` only open ones);
- ``/clob``: ``GET /book?token_id=`` (404 once resolved), ``POST /books``, ``/markets/{condition_id}``,
  ``/midpoint``, ``/price?side=BUY|SELL``; ``POST /order``, ``GET|DELETE /order/{id}`` (shadow
  orders with the ``POLY_API_KEY`` header: their true fills, ``sim/shadow.py``);
- ``/ws/market``: the CLOB market channel (subscribe/operation, ``book`` array, ``price_change``,
  ``last_trade_price`` prints (the order flow, ``sim/flow.py``), ``best_bid_ask``/``new_market``/``market_resolved``
  with ``custom_feature_enabled``, text PING -> PONG, close 1000 "all subscribed assets resolved");
- ``/rtds``: live-data relay (``crypto_prices_chainlink``, ``crypto_prices_twap_sixty``, ``_thirty``,
  ``crypto_prices``), 1 Hz whole-second observations relayed ~1.5 s late, subscribe-time backfill;
- ``/_sim``: control: ``GET markets|oracle|quote|prices|outcome|stats|faults|config|health|prints``,
  ``POST /_sim/faults {"kind": ..., params}``, ``DELETE /_sim/faults``.

Use in tests::

    from slotml.sim import SimConfig, running_sim, sim_in_thread

    async with running_sim(SimConfig(family="5s", seed=7)) as sim:
        sim.base_url, sim.gamma_url, sim.clob_url, sim.ws_market_url, sim.rtds_url
        m = sim.current_market("BTC", ahead=1)      # Market: slug, up_token, down_token, start...
        sim.inject("ws_drop", target="market")       # faults, see slotml.sim.faults.KINDS
        sim.world.window(m).up                       # the outcome (from the price path)

    with sim_in_thread(family="10s") as sim: ...     # same, for synchronous tests

Timing contract (what the backfill reproduces): the book of second s is published at s - 0.25 s;
a relay observation stamped s is published at s + 1.5 +- 0.3 s (``World.relay_delay``), so a
capture within ~0.2 s after a tick g sees the books of g and prices stamped g - 2.

Families ``15m`` (real), ``5m``, ``1m``, ``10s``, ``5s``: the venue's publication delays
(priceToBeat, resolution, finalPrice) are scaled by window_s / 900. Everything is a pure function
of (config, seed, time): ``slotml sim backfill`` writes the same windows the server serves.
"""

from typing import Any

__all__ = ["SimConfig", "SimHandle", "running_sim", "sim_in_thread"]


def __getattr__(name: str) -> Any:
    # lazy: `slotml --help` imports slotml.sim.cli, which must not pull in numpy/aiohttp
    if name == "SimConfig":
        from slotml.sim.config import SimConfig

        return SimConfig
    if name in ("SimHandle", "running_sim", "sim_in_thread"):
        from slotml.sim import runner

        return getattr(runner, name)
    raise AttributeError(name)
