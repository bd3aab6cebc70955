"""One polite HTTP client for the venue's REST APIs (Gamma, CLOB): retries and Retry-After.

Retries 425/429/5xx and connection errors with capped exponential backoff and jitter, or as long
as Retry-After says (seconds, or a date); a 404 is an answer (None), not an error.

A request that still fails after its retries (connection refused, 5xx throughout, another 4xx,
a body that is not JSON) is a FAILURE of that API: logged at WARNING with the reason (the 1st,
the ``FAILING_AFTER``-th and every 100th in a row, then once when it recovers) and counted in
``failures[api]`` (consecutive) and ``http_gave_up{api}``/``http_errors{api,reason}``.
``/health`` turns 503 once Gamma has failed ``FAILING_AFTER`` times in a row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from slotml import venue
from slotml.ingest.metrics import Metrics

log = logging.getLogger(__name__)

RETRY_STATUSES = {425, 429, 500, 502, 503, 504}
FAILING_AFTER = 3  # consecutive failed requests after which an API counts as failing (/health)


class HttpClient:
    """One aiohttp session for Gamma and CLOB REST with backoff on 425/429/5xx.

    ``get_json`` returns the decoded body, or None on 404 (a market not listed yet, a settled
    book). Retry-After (seconds) is honoured; otherwise capped exponential backoff with jitter.
    Every response body can be handed to ``on_body`` (raw capture).
    """

    def __init__(self, metrics: Metrics, timeout: float = 10.0, max_attempts: int = 5,
                 backoff_max: float = 30.0,
                 on_body: Callable[[str, str, float], None] | None = None) -> None:
        self.metrics = metrics
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_max = backoff_max
        self.on_body = on_body
        self._session = None
        self.failures: dict[str, int] = {}  # api -> consecutive failed requests (0 = fine)
        self.last_error: dict[str, str] = {}  # api -> why the last failed request failed

    def failing(self, api: str) -> bool:
        return self.failures.get(api, 0) >= FAILING_AFTER

    def _ok(self, api: str) -> None:
        n = self.failures.get(api, 0)
        if n:
            log.warning("%s answers again after %d failed request(s)", api, n)
        self.failures[api] = 0

    def _failed(self, api: str, url: str, reason: str) -> None:
        n = self.failures[api] = self.failures.get(api, 0) + 1
        self.last_error[api] = reason
        if n in (1, FAILING_AFTER) or n % 100 == 0:
            log.warning("%s failing: %s -> %s (%d in a row%s)", api, url, reason, n,
                        "; /health reports it" if n >= FAILING_AFTER else "")

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": "slotml-collector/0.1"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, url: str, api: str = "gamma") -> Any:
        import aiohttp

        assert self._session is not None, "HttpClient.start() first"
        delay = 0.5
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            wait = None
            try:
                async with self._session.get(url) as r:
                    text = await r.text()
                    now = time.time()
                    self.metrics.inc("http_responses", api=api, status=str(r.status))
                    if self.on_body is not None:
                        self.on_body(f"{api}:{url}", text, now)
                    if r.status == 404:
                        self._ok(api)
                        return None
                    if r.status in RETRY_STATUSES:
                        wait = _retry_after(r.headers.get("Retry-After"))
                        log.info("%s %s -> HTTP %d (attempt %d)", api, url, r.status, attempt)
                    elif r.status >= 400:
                        self.metrics.inc("http_errors", api=api, reason=f"http_{r.status}")
                        self._failed(api, url, f"HTTP {r.status}")
                        return None
                    else:
                        try:
                            body = json.loads(text)
                        except (json.JSONDecodeError, RecursionError):
                            self.metrics.inc("http_errors", api=api, reason="bad_json")
                            self._failed(api, url, f"HTTP {r.status} with a body that is not "
                                         f"JSON ({text[:60]!r})")
                            return None
                        self._ok(api)
                        return body
                last = f"HTTP {r.status}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                # ValueError: aiohttp's own for a URL it cannot request (argtypes refuse most)
                self.metrics.inc("http_errors", api=api, reason=type(e).__name__)
                last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                log.info("%s %s failed: %s (attempt %d)", api, url, type(e).__name__, attempt)
            if attempt == self.max_attempts:
                break
            if wait is None:
                wait = min(self.backoff_max, delay) * (0.5 + random.random())
                delay *= 2
            self.metrics.inc("http_retries", api=api)
            await asyncio.sleep(min(wait, self.backoff_max))
        self.metrics.inc("http_gave_up", api=api)
        self._failed(api, url, f"{last} after {self.max_attempts} attempts")
        return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        t = venue.parse_time(value)
        if t is None:
            try:
                from email.utils import parsedate_to_datetime

                t = parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError):
                return None
        return max(0.0, t - time.time())
