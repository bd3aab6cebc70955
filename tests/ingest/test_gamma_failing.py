"""A Gamma that answers but fails (5xx throughout, 403, garbage) is a WARNING with the reason
and, after ``FAILING_AFTER`` failed requests in a row, a 503 on /health; an unparseable URL is
refused at start (before issue 19: INFO lines only, retried forever, /health 200)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp import web

from slotml.cli import main
from slotml.ingest.metrics import Metrics
from slotml.ingest.transport.http import FAILING_AFTER, HttpClient
from slotml.sim.runner import sim_in_thread
from tests.ingest.collector_harness import CollectorThread, collector_config, get_json
from tests.util import wait_for


async def _serve(answers: list[tuple[int, str]]) -> tuple[web.AppRunner, str]:
    """A real HTTP server answering ``answers`` in turn (the last one forever)."""
    seen = {"n": 0}

    async def handle(_req: web.Request) -> web.Response:
        status, body = answers[min(seen["n"], len(answers) - 1)]
        seen["n"] += 1
        return web.Response(status=status, text=body)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("answer,reason", [
    ((500, "oops"), "HTTP 500"),
    ((403, "forbidden"), "HTTP 403"),
    ((200, "<html>not json</html>"), "not JSON"),
])
async def test_failures_are_warnings_with_the_reason(answer, reason, caplog) -> None:
    caplog.set_level(logging.INFO, logger="slotml.ingest.transport.http")
    runner, base = await _serve([answer] * 4 + [(200, '{"ok": 1}')] if answer[0] != 500
                                else [answer])
    http = HttpClient(Metrics(), timeout=2.0, max_attempts=2, backoff_max=0.01)
    await http.start()
    try:
        for i in range(FAILING_AFTER):
            assert await http.get_json(f"{base}/events/slug/x{i}", "gamma") is None
        assert http.failures["gamma"] == FAILING_AFTER and http.failing("gamma")
        assert reason in http.last_error["gamma"]
        warns = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warns) == 2 and all(reason in w for w in warns)  # the 1st and the 3rd
        if answer[0] != 500:  # the server answers again: the streak ends, logged once
            assert await http.get_json(f"{base}/x", "gamma") is None  # 4th: still failing
            assert await http.get_json(f"{base}/x", "gamma") == {"ok": 1}
            assert http.failures["gamma"] == 0 and not http.failing("gamma")
            assert any("answers again" in r.getMessage() for r in caplog.records)
    finally:
        await http.close()
        await runner.cleanup()


async def test_a_404_is_an_answer_not_a_failure() -> None:
    runner, base = await _serve([(404, "no such market")])
    http = HttpClient(Metrics(), timeout=2.0, max_attempts=2, backoff_max=0.01)
    await http.start()
    try:
        for _ in range(FAILING_AFTER + 1):
            assert await http.get_json(f"{base}/events/slug/x", "gamma") is None
        assert not http.failing("gamma")
    finally:
        await http.close()
        await runner.cleanup()


def test_collector_health_turns_503_while_gamma_fails(tmp_path: Path) -> None:
    with sim_in_thread(family="5s", symbols=("BTC",)) as sim:
        cfg = collector_config(sim, tmp_path)
        with CollectorThread(cfg) as c:
            url = f"http://127.0.0.1:{cfg.health_port}/health"
            wait_for(lambda: get_json(url)[0] == 200, timeout=20, what="healthy collector")
            sim.inject("http_status", status=500, count=10**6, prefix="/gamma")
            status, body = wait_for(lambda: (lambda r: r if r[0] == 503 and any(
                "gamma failing" in p for p in r[1]["problems"]) else None)(get_json(url)),
                timeout=30, what="/health 503 for gamma")
            assert "HTTP 500" in body["http"]["gamma"]["last_error"]
            assert body["http"]["gamma"]["consecutive_failures"] >= FAILING_AFTER
            sim.clear_faults()
            wait_for(lambda: get_json(url)[0] == 200, timeout=30, what="healthy again")
            assert c.collector.http.failures["gamma"] == 0


@pytest.mark.parametrize("url", ["notaurl", "http://", "ftp://x/y", "http://x:99999/"])
def test_an_unparseable_gamma_url_is_refused_at_start(url, capsys, monkeypatch) -> None:
    assert main(["collect", "--gamma-url", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gamma-url" in err[0]
    monkeypatch.setenv("SLOTML_GAMMA_URL", url)  # the environment is checked like the flag
    assert main(["collect", "--health-port", "0", "--db", "sqlite:////proc/x.db"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SLOTML_GAMMA_URL" in err[0]
