"""One polite HTTP client for the venue's REST APIs (Gamma, CLOB): retries and Retry-After.

Retries 425/429/5xx and connection errors with capped exponential backoff and jitter, or as long
as Retry-After says (seconds, or a date); a 404 is an answer (None), not an error.
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
                        return None
                    if r.status in RETRY_STATUSES:
                        wait = _retry_after(r.headers.get("Retry-After"))
                        log.info("%s %s -> HTTP %d (attempt %d)", api, url, r.status, attempt)
                    elif r.status >= 400:
                        self.metrics.inc("http_errors", api=api, reason=f"http_{r.status}")
                        return None
                    else:
                        try:
                            return json.loads(text)
                        except json.JSONDecodeError:
                            self.metrics.inc("http_errors", api=api, reason="bad_json")
                            return None
            except (aiohttp.ClientError, TimeoutError) as e:
                self.metrics.inc("http_errors", api=api, reason=type(e).__name__)
                log.info("%s %s failed: %s (attempt %d)", api, url, type(e).__name__, attempt)
            if attempt == self.max_attempts:
                break
            if wait is None:
                wait = min(self.backoff_max, delay) * (0.5 + random.random())
                delay *= 2
            self.metrics.inc("http_retries", api=api)
            await asyncio.sleep(min(wait, self.backoff_max))
        self.metrics.inc("http_gave_up", api=api)
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
