"""``slotml api`` over real HTTP on loopback, on a store and lake filled by the sim's backfill.

Answers are checked against the store itself (sqlite3, written independently here) and the
lake (DuckDB); every kind of bad parameter must be a 422 with FastAPI's error shape.
"""

from __future__ import annotations

import io
import json
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from slotml.features.contract import DEFAULT_TOLERANCE, frac_ms
from slotml.web.api import ApiConfig, create_app, decode_cursor, encode_cursor
from tests.serve.sim_data import serve_app, shared_sim_data


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):
    data = shared_sim_data(tmp_path_factory.getbasetemp())
    with serve_app(create_app(ApiConfig(db=data["url"], lake_dir=data["lake"]))) as base:
        yield {"base": base, "db": data["db"], "lake": data["lake"]}


def get(api: dict, path: str, **params: Any) -> tuple[int, dict[str, str], bytes]:
    q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    req = urllib.request.Request(f"{api['base']}{path}" + (f"?{q}" if q else ""))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(api: dict, path: str, **params: Any) -> dict:
    status, _, body = get(api, path, **params)
    assert status == 200, body[:500]
    return json.loads(body)


def sql(api: dict, query: str, params: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(f"file:{api['db']}?mode=ro", uri=True)
    try:
        return con.execute(query, params).fetchall()
    finally:
        con.close()


def all_pages(api: dict, **params: Any) -> tuple[list[dict], int]:
    out, cursor, pages = [], None, 0
    while True:
        page = get_json(api, "/slots", cursor=cursor, **params)
        out += page["rows"]
        pages += 1
        assert page["count"] == len(page["rows"])
        cursor = page["next_cursor"]
        if cursor is None:
            return out, pages


def test_pages_cover_the_store_once_in_order(api) -> None:
    first = get_json(api, "/slots")
    assert first["count"] == 1000 and first["next_cursor"]
    rows, pages = all_pages(api, limit=2500)
    n = sql(api, "SELECT count(*) FROM slot_snapshots")[0][0]
    assert n > 5000 and len(rows) == n and pages == -(-n // 2500) + (n % 2500 == 0)
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == n
    assert [(r["slot_ts"], r["id"]) for r in rows] == sorted((r["slot_ts"], r["id"]) for r in rows)
    # the join: each row carries its window's resolution
    res = {(s, w, t): up for s, w, t, up in
           sql(api, "SELECT symbol, window_s, slot_ts, resolved_up FROM slot_resolutions")}
    for r in rows[::97]:
        up = res.get((r["symbol"], r["window_s"], r["slot_ts"]))
        assert r["resolved_up"] == (None if up is None else bool(up))


def test_filters_match_the_store(api) -> None:
    slots = [r[0] for r in sql(api, "SELECT DISTINCT slot_ts FROM slot_snapshots ORDER BY 1")]
    lo, hi = slots[40], slots[100]
    iso = lambda t: __import__("datetime").datetime.fromtimestamp(t, __import__("datetime").UTC).isoformat()  # noqa: E731
    a, _ = all_pages(api, symbol="eth", family="5m", **{"from": lo, "to": hi}, limit=100_000)
    b, _ = all_pages(api, symbol="ETH", family="5m", **{"from": iso(lo), "to": iso(hi).replace("+00:00", "Z")})
    want = sql(api, "SELECT id FROM slot_snapshots WHERE symbol = 'ETH' AND window_s = 300 "
                    "AND slot_ts >= ? AND slot_ts < ? ORDER BY slot_ts, id", (lo, hi))
    assert [r["id"] for r in a] == [r["id"] for r in b] == [w[0] for w in want] and want
    for flag, cond in (("true", "r.resolved_up IS NOT NULL"), ("false", "r.resolved_up IS NULL")):
        got, _ = all_pages(api, resolved=flag, limit=100_000)
        n = sql(api, "SELECT count(*) FROM slot_snapshots s LEFT JOIN slot_resolutions r "
                     "USING (symbol, window_s, slot_ts) WHERE " + cond)[0][0]
        assert len(got) == n and n > 0, flag
    assert get_json(api, "/slots", family="15m")["count"] == 0
    for fam in ("1h", "4h", "1d"):  # every venue family is a valid filter (here: none collected)
        assert get_json(api, "/slots", family=fam)["count"] == 0, fam
        assert get_json(api, "/slots/summary", family=fam)["rows"] == [], fam


def test_point_and_minute_give_the_contracts_row_per_window(api) -> None:
    p = 0.5
    rows, _ = all_pages(api, point=p, family="5m", symbol="BTC", limit=100)
    keys = [r["slot_ts"] for r in rows]
    assert len(keys) == len(set(keys)) > 200
    off, tol = frac_ms(p, 300), frac_ms(DEFAULT_TOLERANCE, 300)
    for r in rows:
        d = r["slot_ts"] * 1000 + off
        assert d - tol <= r["tick_ms"] <= d
        later = sql(api, "SELECT count(*) FROM slot_snapshots WHERE symbol = 'BTC' AND window_s = 300 "
                         "AND slot_ts = ? AND tick_ms > ? AND tick_ms <= ?", (r["slot_ts"], r["tick_ms"], d))
        if r["slot_ts"] % 7 == 0:  # spot checks keep this fast
            assert later[0][0] == 0
    # without a family: the store's families (here only 5m)
    assert len(all_pages(api, point=p, symbol="BTC", limit=100_000)[0]) == len(rows)
    status, _, body = get(api, "/slots", minute=5, family="5m")
    assert status == 422 and b"15m" in body
    assert get_json(api, "/slots", minute=5)["count"] == 0  # 15m implied; the store has 5m only


def test_csv_and_parquet_equal_json(api) -> None:
    params = {"symbol": "BTC", "limit": 300, "resolved": "true"}
    page = get_json(api, "/slots", **params)
    status, headers, body = get(api, "/slots", format="csv", **params)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert headers["x-next-cursor"] == page["next_cursor"]
    csv_rows = pcsv.read_csv(io.BytesIO(body)).to_pylist()
    status, headers, body = get(api, "/slots", format="parquet", **params)
    assert status == 200 and headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(body))
    assert table.schema.field("resolved_up").type == "bool"
    pq_rows = table.to_pylist()
    assert len(csv_rows) == len(pq_rows) == 300
    for j, c, p in zip(page["rows"], csv_rows, pq_rows, strict=True):
        assert j == p
        assert c["id"] == j["id"] and c["tick_ms"] == j["tick_ms"]
        assert c["bid_up"] == j["bid_up"] or (c["bid_up"] is None and j["bid_up"] is None)


@pytest.mark.parametrize("params, loc", [
    ({"limit": 0}, "limit"), ({"limit": 100_001}, "limit"), ({"limit": "ten"}, "limit"),
    ({"from": "yesterday"}, "from"), ({"from": "1e400"}, "from"), ({"to": "-5"}, "to"),
    ({"from": "9999-12-31T23:59:59"}, "from"), ({"from": 2000, "to": 1000}, "to"),
    ({"cursor": "garbage"}, "cursor"), ({"cursor": encode_cursor((1, 2))[:-1] + "!"}, "cursor"),
    ({"point": 1.5}, "point"), ({"point": 0}, "point"), ({"point": "nan"}, "point"),
    ({"point": 0.5, "minute": 5}, "minute"), ({"minute": 15}, "minute"),
    ({"symbol": "BTC' OR '1'='1"}, "symbol"), ({"family": "15x"}, "family"),
    ({"family": "0m"}, "family"), ({"family": "2h"}, "family"), ({"family": "1w"}, "family"),
    ({"resolved": "maybe"}, "resolved"), ({"format": "xml"}, "format"),
])
def test_bad_parameters_are_422_with_the_reason(api, params, loc) -> None:
    status, headers, body = get(api, "/slots", **params)
    assert status == 422, (params, status, body[:300])
    detail = json.loads(body)["detail"]
    assert any(d["loc"][-1] == loc and d["msg"] for d in detail), detail


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor((1_795_000_200, 123456))) == (1_795_000_200, 123456)


def test_summary_from_the_lake(api) -> None:
    import duckdb

    page = get_json(api, "/slots/summary")
    rows = page["rows"]
    assert page["lake_manifest_id"] >= 1 and rows
    con = duckdb.connect()
    files = str(api["lake"] / "slot_resolutions" / "**" / "*.parquet")
    want = dict(((s, d), (n, k)) for s, d, n, k in con.execute(
        "SELECT symbol, CAST(to_timestamp(slot_ts) AT TIME ZONE 'UTC' AS DATE)::VARCHAR, count(*), "
        "count(resolved_up) FROM read_parquet(?) GROUP BY ALL", [files]).fetchall())
    got = {(r["symbol"], r["day"]): (r["windows"], r["resolved"]) for r in rows}
    assert got == want
    assert all(r["window_s"] == 300 and 0 < r["snapshots_per_window"] <= 10 for r in rows)
    assert any(r["resolution_rate"] < 1 for r in rows)  # the sim left some unresolved
    eth = get_json(api, "/slots/summary", symbol="ETH", family="5m")["rows"]
    assert {r["symbol"] for r in eth} == {"ETH"}
    status, _, _ = get(api, "/slots/summary", to="nope")
    assert status == 422


def test_health(api) -> None:
    h = get_json(api, "/health")
    assert h["status"] == "ok" and h["store"]["ok"]
    newest = sql(api, "SELECT max(slot_ts) FROM slot_snapshots")[0][0]
    assert h["store"]["latest_slot_ts"] == newest
    assert h["lake"]["snapshot_rows"] == sql(api, "SELECT count(*) FROM slot_snapshots")[0][0]


def test_openapi_documents_every_route(api) -> None:
    spec = get_json(api, "/openapi.json")
    assert {"/slots", "/slots/summary", "/health"} <= set(spec["paths"])
    params = {p["name"] for p in spec["paths"]["/slots"]["get"]["parameters"]}
    assert {"symbol", "family", "from", "to", "resolved", "point", "minute", "limit", "cursor",
            "format"} <= params


def test_cli_refuses_a_missing_store_or_lake_in_one_line(tmp_path: Path, capsys) -> None:
    from slotml.cli import main

    assert main(["api", "--db", f"sqlite:///{tmp_path}/none.db", "--port", "1"]) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("slotml api: error:")]
    assert len(errors) == 1 and "no store at" in errors[0] and "Traceback" not in err
    assert main(["dashboard", "--lake-dir", str(tmp_path / "nolake")]) == 2
    assert "--lake-dir" in (err := capsys.readouterr().err) and "does not exist" in err
    assert main(["dashboard", "--data-dir", str(tmp_path)]) == 2
    assert "no lake at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()  # a read-only tool never creates a store
