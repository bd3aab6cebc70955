"""Start-up upgrade of the design-era tables (FLOAT columns, no window_s / tick_ms) on both
backends, with hand-made legacy tables holding data and duplicates."""

from __future__ import annotations

import sqlite3

import pymysql
import pytest

from slotml.ingest.store import open_store
from tests.ingest import test_store as _fx

SLOT = 1_767_200_400

MYSQL_LEGACY = [
    """CREATE TABLE slot_snapshots (
      id BIGINT AUTO_INCREMENT PRIMARY KEY, symbol VARCHAR(10) NOT NULL, slot_ts INT NOT NULL,
      captured_at DOUBLE NOT NULL, minutes_into_slot FLOAT NOT NULL,
      bid_up FLOAT, ask_up FLOAT, bid_down FLOAT, ask_down FLOAT, spread_up FLOAT,
      spread_down FLOAT, chainlink_price FLOAT, dir_move_pct FLOAT, abs_move_pct FLOAT,
      note VARCHAR(20), KEY (slot_ts))""",
    """CREATE TABLE slot_resolutions (
      id BIGINT AUTO_INCREMENT PRIMARY KEY, symbol VARCHAR(10) NOT NULL, slot_ts INT NOT NULL,
      price_to_beat FLOAT, final_price FLOAT, resolved_up BOOLEAN, prev_resolved_up BOOLEAN,
      resolved_at DATETIME, UNIQUE KEY legacy_slot (symbol, slot_ts))""",
]
SQLITE_LEGACY = [
    """CREATE TABLE slot_snapshots (
      id INTEGER PRIMARY KEY AUTOINCREMENT, symbol VARCHAR(10) NOT NULL, slot_ts INT NOT NULL,
      captured_at DOUBLE NOT NULL, minutes_into_slot FLOAT NOT NULL,
      bid_up FLOAT, ask_up FLOAT, bid_down FLOAT, ask_down FLOAT, spread_up FLOAT,
      spread_down FLOAT, chainlink_price FLOAT, dir_move_pct FLOAT, abs_move_pct FLOAT,
      note VARCHAR(20))""",
    "CREATE INDEX legacy_slot_ix ON slot_snapshots (slot_ts)",
    """CREATE TABLE slot_resolutions (
      id INTEGER PRIMARY KEY AUTOINCREMENT, symbol VARCHAR(10) NOT NULL, slot_ts INT NOT NULL,
      price_to_beat FLOAT, final_price FLOAT, resolved_up BOOLEAN, prev_resolved_up BOOLEAN,
      resolved_at DOUBLE, UNIQUE (symbol, slot_ts))""",
]
# (captured_at offset from SLOT, bid_up): rows 1 and 2 land on the same 30 s grid instant
SNAPS = [(30.4, 0.55), (29.8, 0.56), (60.1, 0.123), (89.6, 0.001)]

# the store suite's own database (see test_store.py)
any_db = _fx.any_db
mysql_db = _fx.mysql_db


def make_legacy(url) -> None:
    ph = "%s" if url.scheme == "mysql" else "?"
    snap_sql = (f"INSERT INTO slot_snapshots (symbol, slot_ts, captured_at, minutes_into_slot, "
                f"bid_up, ask_up, chainlink_price, note) VALUES ({', '.join([ph] * 8)})")
    res_sql = (f"INSERT INTO slot_resolutions (symbol, slot_ts, price_to_beat, final_price, "
               f"resolved_up, resolved_at) VALUES ({', '.join([ph] * 6)})")
    snaps = [("BTC", SLOT, SLOT + off, off / 60, bid, bid + 0.01, 95123.45, f"r{i}")
             for i, (off, bid) in enumerate(SNAPS)]
    # resolved_at: a UTC DATETIME in the MySQL design, epoch seconds in SQLite
    first = "2025-12-31 17:16:40" if url.scheme == "mysql" else SLOT + 1000.0
    res = [("BTC", SLOT, 95000.5, 95123.45, 1, first), ("BTC", SLOT + 900, 95123.45, None, None, None)]
    if url.scheme == "mysql":
        conn = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                               database=url.database, autocommit=True)
        with conn.cursor() as cur:
            for stmt in MYSQL_LEGACY:
                cur.execute(stmt)
            cur.executemany(snap_sql, snaps)
            cur.executemany(res_sql, res)
        conn.close()
    else:
        conn = sqlite3.connect(str(url.path))
        for stmt in SQLITE_LEGACY:
            conn.execute(stmt)
        conn.executemany(snap_sql, snaps)
        conn.executemany(res_sql, res)
        conn.commit()
        conn.close()


async def test_legacy_tables_are_upgraded(any_db) -> None:
    make_legacy(any_db)
    store = open_store(any_db)
    await store.connect()
    try:
        done = await store.ensure_schema()
        text = "\n".join(done)
        assert "slot_snapshots: added columns window_s, tick_ms" in text
        assert "derived tick_ms from captured_at" in text
        assert "slot_snapshots: removed 1 duplicate rows" in text
        if any_db.scheme == "mysql":
            assert "bid_up FLOAT" in text and "-> DOUBLE" in text
            assert "dropped the old unique key legacy_slot" in text
            assert "resolved_at DATETIME -> epoch seconds DOUBLE" in text
        assert await store.ensure_schema() == []  # idempotent

        snaps = await store.fetch_snapshots()
        assert [r["id"] for r in snaps] == [1, 3, 4]  # the lowest id of the duplicates stays
        assert [r["tick_ms"] for r in snaps] == [(SLOT + 30 * k) * 1000 for k in (1, 2, 3)]
        assert [r["window_s"] for r in snaps] == [900] * 3
        # float32 noise gone: the tick grid values come back exact
        assert [r["bid_up"] for r in snaps] == [0.55, 0.123, 0.001]
        assert [r["ask_up"] for r in snaps] == [0.56, 0.133, 0.011]
        assert {r["chainlink_price"] for r in snaps} == {95123.45}
        assert (snaps[0]["hour_utc"], snaps[0]["day_of_week"]) == (17, 2)  # Wed 2025-12-31 17:00
        assert all(r["updated_at"] > SLOT for r in snaps)

        res = await store.fetch_resolutions()
        assert [(r["slot_ts"], r["window_s"], r["resolved_up"]) for r in res] == [
            (SLOT, 900, True), (SLOT + 900, 900, None)]
        assert res[0]["price_to_beat"] == 95000.5
        assert res[0]["resolved_at"] == SLOT + 1000.0 and res[1]["resolved_at"] is None

        # the new keys hold: a replayed tick is a no-op, another family is a new row
        again = {k: v for k, v in snaps[0].items() if k not in ("id", "updated_at")}
        assert await store.insert_snapshots([again]) == 0
        assert await store.upsert_resolutions([{"symbol": "BTC", "window_s": 300,
                                                "slot_ts": SLOT, "resolved_up": False}]) == 1
        assert await store.count("slot_resolutions") == 3
        # new rows get ids after the legacy ones
        assert await store.insert_snapshots([{**again, "tick_ms": (SLOT + 120) * 1000}]) == 1
        assert max(r["id"] for r in await store.fetch_snapshots()) > 4
    finally:
        await store.close()


async def test_a_half_upgraded_table_is_finished(any_db) -> None:
    """MySQL DDL commits as it goes: an upgrade interrupted after adding tick_ms (still NULL,
    no unique key yet) is completed by the next start, losing no row."""
    make_legacy(any_db)
    stmt = "ALTER TABLE slot_snapshots ADD COLUMN tick_ms BIGINT NULL"
    if any_db.scheme == "mysql":
        conn = pymysql.connect(host=any_db.host, port=any_db.port, user=any_db.user,
                               password=any_db.password, database=any_db.database, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(stmt)
        conn.close()
    else:
        conn = sqlite3.connect(str(any_db.path))
        conn.execute(stmt)
        conn.commit()
        conn.close()
    store = open_store(any_db)
    await store.connect()
    try:
        done = "\n".join(await store.ensure_schema())
        assert "derived tick_ms" in done and "removed 1 duplicate rows" in done
        assert "lacking a required value" not in done
        snaps = await store.fetch_snapshots()
        assert [r["tick_ms"] for r in snaps] == [(SLOT + 30 * k) * 1000 for k in (1, 2, 3)]
        assert await store.ensure_schema() == []
    finally:
        await store.close()


async def test_a_foreign_table_is_not_touched(any_db) -> None:
    if any_db.scheme == "mysql":
        conn = pymysql.connect(host=any_db.host, port=any_db.port, user=any_db.user,
                               password=any_db.password, database=any_db.database, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE slot_snapshots (id INT PRIMARY KEY, other TEXT)")
        conn.close()
    else:
        conn = sqlite3.connect(str(any_db.path))
        conn.execute("CREATE TABLE slot_snapshots (id INTEGER PRIMARY KEY, other TEXT)")
        conn.commit()
        conn.close()
    store = open_store(any_db)
    await store.connect()
    try:
        from slotml.errors import UserError
        with pytest.raises(UserError, match="not a slotml table"):
            await store.ensure_schema()
    finally:
        await store.close()


# --- version 1 (before the trade tape and depth) -> version 2 ---------------------------------

def _raw(url, stmts: list[str]) -> None:
    """Run statements outside the store (as another program, or the previous slotml, would)."""
    if url.scheme == "mysql":
        conn = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                               database=url.database, autocommit=True)
        with conn.cursor() as cur:
            for s in stmts:
                cur.execute(s)
        conn.close()
    else:
        conn = sqlite3.connect(str(url.path))
        for s in stmts:
            conn.execute(s)
        conn.commit()
        conn.close()


def _undo_version_4(url) -> list[str]:
    """Statements taking version 4's changes away: ``resolution_source`` dropped and, on MySQL,
    ``settlement`` narrowed back to VARCHAR(8) (SQLite stores TEXT: nothing to narrow)."""
    q = "`" if url.scheme == "mysql" else '"'
    out = [f"ALTER TABLE slot_resolutions DROP COLUMN {q}resolution_source{q}"]
    if url.scheme == "mysql":
        out.append("ALTER TABLE slot_resolutions MODIFY `settlement` VARCHAR(8) NULL")
    return out


def _undo_version_5(url) -> list[str]:
    """Statements taking version 5's touch columns away."""
    from slotml.ingest.schema import TOUCH_COLUMNS

    if url.scheme == "mysql":
        return ["ALTER TABLE slot_snapshots " + ", ".join(f"DROP COLUMN `{c}`" for c in TOUCH_COLUMNS)]
    return [f'ALTER TABLE slot_snapshots DROP COLUMN "{c}"' for c in TOUCH_COLUMNS]


TOUCH_ADDED = "slot_snapshots: added columns ask_up_low, bid_up_high, ask_down_low, bid_down_high"


def _widened(url) -> list[str]:
    """The upgrade's line for the narrowed ``settlement`` (MySQL only)."""
    if url.scheme != "mysql":
        return []
    return ["slot_resolutions: widened settlement VARCHAR(8) -> VARCHAR(24)"]


async def make_version_1(url) -> tuple[list[dict], list[dict]]:
    """A store exactly as schema version 1 left it, with rows: made by this code, then the
    version-2 additions taken away (the depth columns, the tape tables) and the version row
    set back to 1. Returns its snapshot and resolution rows as read back then."""
    from slotml.ingest.schema import DEPTH_COLUMNS, TAPE_GAPS, TRADES
    from tests.ingest.test_store import snap

    store = open_store(url)
    await store.connect()
    try:
        await store.ensure_schema()
        await store.insert_snapshots([snap(i) for i in range(6)])
        await store.upsert_resolutions([{"symbol": "BTC", "window_s": 900, "slot_ts": SLOT,
                                         "slug": "btc-updown-15m-1", "resolved_up": True},
                                        {"symbol": "ETH", "window_s": 900, "slot_ts": SLOT}])
        snaps, res = await store.fetch_snapshots(), await store.fetch_resolutions()
    finally:
        await store.close()
    q = "`" if url.scheme == "mysql" else '"'
    from slotml.ingest.schema import TOUCH_COLUMNS

    gone = (*DEPTH_COLUMNS, "spot_source", *TOUCH_COLUMNS)  # versions 2's, 3's and 5's
    drops = [f"ALTER TABLE slot_snapshots DROP COLUMN {q}{c}{q}" for c in gone]
    if url.scheme == "mysql":  # one statement: 40 table copies would be slow
        drops = ["ALTER TABLE slot_snapshots " + ", ".join(f"DROP COLUMN `{c}`" for c in gone)]
    drops.append(f"ALTER TABLE slot_resolutions DROP COLUMN {q}spot_source{q}")
    _raw(url, [*drops, *_undo_version_4(url), f"DROP TABLE {TRADES.name}", f"DROP TABLE {TAPE_GAPS.name}",
               "DELETE FROM schema_version", "INSERT INTO schema_version (version, applied_at, "
               "description) VALUES (1, 1767200000.5, 'slotml schema')"])
    return snaps, res


async def test_version_1_store_is_upgraded_in_place(any_db) -> None:
    from slotml.ingest.schema import DEPTH_COLUMNS, SCHEMA_VERSION, SNAPSHOTS, TOUCH_COLUMNS

    assert SCHEMA_VERSION == 5
    snaps, res = await make_version_1(any_db)
    v1_cols = [c for c in SNAPSHOTS.names if c not in DEPTH_COLUMNS and c != "spot_source"
               and c not in TOUCH_COLUMNS]
    store = open_store(any_db)
    await store.connect()
    try:
        done = await store.ensure_schema()
        assert done == ["slot_snapshots: added columns spot_source, ask_up_low, bid_up_high, "
                        "ask_down_low, bid_down_high, the 40 depth columns "
                        "bid_up_l1 .. ask_size_down_l5", *_widened(any_db),
                        "slot_resolutions: added columns spot_source, resolution_source",
                        "created table slot_trades",
                        "created table slot_tape_gaps", "schema version 1 -> 5"]
        assert await store.ensure_schema() == []  # a second run does nothing
        assert await store.execute("SELECT max(version) FROM schema_version") == [(5,)]
        # the rows are intact (ids, values, updated_at untouched), their depth NULL
        after = await store.fetch_snapshots()
        assert [{k: r[k] for k in v1_cols} for r in after] == [
            {k: r[k] for k in v1_cols} for r in snaps]
        assert all(r[c] is None for r in after for c in (*DEPTH_COLUMNS, *TOUCH_COLUMNS))
        new_cols = ("spot_source", "resolution_source")
        assert [{k: v for k, v in r.items() if k not in new_cols}
                for r in await store.fetch_resolutions()] == [
            {k: v for k, v in r.items() if k not in new_cols} for r in res]
        assert await store.count("slot_trades") == 0 and await store.count("slot_tape_gaps") == 0
        # and the upgraded store takes version-2 rows
        row = {k: v for k, v in snaps[0].items() if k not in ("id", "updated_at")}
        assert await store.insert_snapshots([{**row, "tick_ms": row["tick_ms"] + 300_000,
                                              "bid_up_l1": row["bid_up"], "bid_size_up_l1": 10.0}]) == 1
        last = (await store.fetch_snapshots())[-1]
        assert (last["bid_up_l1"], last["bid_size_up_l1"], last["bid_up_l2"]) == (row["bid_up"], 10.0, None)
        # the column order of an upgraded table is a fresh one's (ADD COLUMN appends)
        if any_db.scheme == "sqlite":
            names = [r[1] for r in await store.execute("PRAGMA table_info(slot_snapshots)")]
        else:
            names = [r[0] for r in await store.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = 'slot_snapshots' ORDER BY ORDINAL_POSITION", [any_db.database])]
        assert names == SNAPSHOTS.names
    finally:
        await store.close()


async def test_version_2_store_gains_spot_source(any_db) -> None:
    """Version 2 -> 3 (PolyBolt): ``spot_source`` appended to both tables, rows intact and
    NULL there, and the upgraded store takes rows naming their spot source."""
    from slotml.ingest.schema import RESOLUTIONS, SNAPSHOTS
    from tests.ingest.test_store import snap

    store = open_store(any_db)
    await store.connect()
    try:
        await store.ensure_schema()
        await store.insert_snapshots([snap(i) for i in range(3)])
        await store.upsert_resolutions([{"symbol": "BTC", "window_s": 900, "slot_ts": SLOT,
                                         "price_to_beat": 1.5}])
        snaps, res = await store.fetch_snapshots(), await store.fetch_resolutions()
    finally:
        await store.close()
    q = "`" if any_db.scheme == "mysql" else '"'
    _raw(any_db, [f"ALTER TABLE slot_snapshots DROP COLUMN {q}spot_source{q}",
                  f"ALTER TABLE slot_resolutions DROP COLUMN {q}spot_source{q}",
                  *_undo_version_4(any_db), *_undo_version_5(any_db), "DELETE FROM schema_version",
                  "INSERT INTO schema_version (version, "
                  "applied_at, description) VALUES (2, 1767200000.5, 'slotml schema')"])
    store = open_store(any_db)
    await store.connect()
    try:
        assert await store.ensure_schema() == [
            "slot_snapshots: added columns spot_source, ask_up_low, bid_up_high, ask_down_low, "
            "bid_down_high", *_widened(any_db),
            "slot_resolutions: added columns spot_source, resolution_source",
            "schema version 2 -> 5"]
        assert await store.fetch_snapshots() == snaps
        assert await store.fetch_resolutions() == res  # resolution_source: NULL before and after
        assert all(r["spot_source"] is None for r in snaps + res)
        row = {k: v for k, v in snaps[0].items() if k not in ("id", "updated_at")}
        await store.insert_snapshots([{**row, "tick_ms": row["tick_ms"] + 1, "spot_source": "pyth"}])
        await store.upsert_resolutions([{"symbol": "BTC", "window_s": 900, "slot_ts": SLOT,
                                         "spot_source": "chainlink"}])
        new = [r for r in await store.fetch_snapshots() if r["tick_ms"] == row["tick_ms"] + 1]
        assert [r["spot_source"] for r in new] == ["pyth"]
        assert (await store.fetch_resolutions())[0]["spot_source"] == "chainlink"
        if any_db.scheme == "sqlite":
            for t in (SNAPSHOTS, RESOLUTIONS):
                names = [r[1] for r in await store.execute(f"PRAGMA table_info({t.name})")]
                assert names == t.names
    finally:
        await store.close()


async def test_version_3_store_gains_the_wider_settlement(any_db) -> None:
    """Version 3 -> 4 (every family): ``settlement`` holds the 17-character Binance rules and
    ``resolution_source`` is appended; the version-3 rows are intact, their new column NULL."""
    from slotml.ingest.schema import RESOLUTIONS

    store = open_store(any_db)
    await store.connect()
    try:
        await store.ensure_schema()
        await store.upsert_resolutions([
            {"symbol": "BTC", "window_s": 900, "slot_ts": SLOT, "settlement": "twap60",
             "price_to_beat": 1.5},
            {"symbol": "ETH", "window_s": 900, "slot_ts": SLOT, "settlement": "spot"}])
        res = await store.fetch_resolutions()
    finally:
        await store.close()
    _raw(any_db, [*_undo_version_4(any_db), *_undo_version_5(any_db), "DELETE FROM schema_version",
                  "INSERT INTO schema_version (version, applied_at, description) "
                  "VALUES (3, 1767200000.5, 'slotml schema')"])
    store = open_store(any_db)
    await store.connect()
    try:
        assert await store.ensure_schema() == [
            TOUCH_ADDED, *_widened(any_db), "slot_resolutions: added columns resolution_source",
            "schema version 3 -> 5"]
        assert await store.ensure_schema() == []
        after = await store.fetch_resolutions()
        assert after == res and all(r["resolution_source"] is None for r in after)
        src = "https://www.binance.com/en/futures/HYPEUSDT"
        assert await store.upsert_resolutions([
            {"symbol": "HYPE", "window_s": 86400, "slot_ts": SLOT, "settlement": "binance_noon_perp",
             "resolution_source": src}]) == 1
        got = [r for r in await store.fetch_resolutions() if r["symbol"] == "HYPE"]
        assert [(r["settlement"], r["resolution_source"]) for r in got] == [
            ("binance_noon_perp", src)]
        if any_db.scheme == "mysql":
            assert await store.execute(
                "SELECT CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS WHERE "
                "TABLE_SCHEMA = %s AND TABLE_NAME = 'slot_resolutions' AND COLUMN_NAME = "
                "'settlement'", [any_db.database]) == [(24,)]
        else:
            names = [r[1] for r in await store.execute("PRAGMA table_info(slot_resolutions)")]
            assert names == RESOLUTIONS.names
    finally:
        await store.close()


async def test_a_newer_store_is_refused(any_db) -> None:
    from slotml.errors import UserError
    from slotml.ingest.schema import SCHEMA_VERSION

    store = open_store(any_db)
    await store.connect()
    try:
        await store.ensure_schema()
        await store.execute("INSERT INTO schema_version (version, applied_at, description) "
                            f"VALUES ({SCHEMA_VERSION + 1}, 1.0, 'future')")
        with pytest.raises(UserError, match=f"database schema version {SCHEMA_VERSION + 1} is "
                                            f"newer than this slotml's \\({SCHEMA_VERSION}\\)"):
            await store.ensure_schema()
    finally:
        await store.close()


async def test_db_init_prints_the_upgrade(tmp_path, capsys) -> None:
    import asyncio

    from slotml.cli import main
    from slotml.settings import DbUrl

    url = DbUrl(scheme="sqlite", path=tmp_path / "v1.db")
    await make_version_1(url)
    args = ["db", "init", "--db", url.raw, "--data-dir", str(tmp_path)]
    assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr().out
    assert "added columns spot_source, ask_up_low, bid_up_high, ask_down_low, bid_down_high, " \
           "the 40 depth columns" in out
    assert "created table slot_trades" in out
    assert "schema version 1 -> 5" in out
    assert "rows: slot_snapshots 6, slot_resolutions 2, slot_trades 0, slot_tape_gaps 0" in out
    assert await asyncio.to_thread(main, args) == 0
    assert "schema up to date, nothing to do" in capsys.readouterr().out


async def test_version_4_store_gains_the_touch_range(any_db) -> None:
    """Version 4 -> 5 (book-through fills): the four touch columns appended to
    ``slot_snapshots``, version-4 rows intact and NULL there; new rows keep their values."""
    from slotml.ingest.schema import SNAPSHOTS, TOUCH_COLUMNS
    from tests.ingest.test_store import snap

    store = open_store(any_db)
    await store.connect()
    try:
        await store.ensure_schema()
        await store.insert_snapshots([snap(i) for i in range(3)])
        before = await store.fetch_snapshots()
    finally:
        await store.close()
    _raw(any_db, [*_undo_version_5(any_db), "DELETE FROM schema_version",
                  "INSERT INTO schema_version (version, applied_at, description) "
                  "VALUES (4, 1767200000.5, 'slotml schema')"])
    store = open_store(any_db)
    await store.connect()
    try:
        assert await store.ensure_schema() == [TOUCH_ADDED, "schema version 4 -> 5"]
        after = await store.fetch_snapshots()
        assert after == before and all(r[c] is None for r in after for c in TOUCH_COLUMNS)
        row = {k: v for k, v in before[0].items() if k not in ("id", "updated_at")}
        touch = {"ask_up_low": 0.41, "bid_up_high": 0.47, "ask_down_low": 0.52, "bid_down_high": 0.58}
        await store.insert_snapshots([{**row, "tick_ms": row["tick_ms"] + 1, **touch}])
        new = [r for r in await store.fetch_snapshots() if r["tick_ms"] == row["tick_ms"] + 1]
        assert [{c: r[c] for c in TOUCH_COLUMNS} for r in new] == [touch]
        if any_db.scheme == "sqlite":
            assert [r[1] for r in await store.execute("PRAGMA table_info(slot_snapshots)")] == SNAPSHOTS.names
    finally:
        await store.close()
