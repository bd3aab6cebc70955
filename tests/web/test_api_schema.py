"""The API against its own OpenAPI description, with schemathesis-generated requests.

No generated request may get a 500; every response must conform to the schema (status code,
content type, headers, body). The fixture store holds real sim data, and the last test checks
that the generated requests did reach it (a run where every request is rejected proves
nothing).
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from slotml.web.api import ApiConfig, create_app
from tests.serve.sim_data import serve_app, shared_sim_data

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
SEEN: Counter = Counter()  # (path, status, has rows)


@pytest.fixture(scope="module")
def api_base(tmp_path_factory: pytest.TempPathFactory):
    data = shared_sim_data(tmp_path_factory.getbasetemp())
    with serve_app(create_app(ApiConfig(db=data["url"], lake_dir=data["lake"]))) as base:
        yield base


def _operations(base: str) -> list:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    return [r.ok() for r in schema.get_all_operations()]


# schemathesis' own pytest plugin (from_fixture) does not run under pytest 9: drive Hypothesis
# with its strategies directly, positive and negative generation for every operation.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests(api_base: str, mode: GenerationMode) -> None:
    ops = _operations(api_base)
    assert {op.path for op in ops} >= {"/slots", "/slots/summary", "/health"}
    for op in ops:
        if mode is GenerationMode.NEGATIVE and not op.query:
            continue  # nothing to get wrong (/health)

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=30, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            response = case.call(base_url=api_base, timeout=30)
            ctype = (response.headers.get("content-type") or [""])[0]
            body = response.json() if ctype.startswith("application/json") else None
            has_rows = bool(body.get("rows")) if isinstance(body, dict) else response.status_code == 200
            SEEN[(case.path, response.status_code, has_rows)] += 1
            case.validate_response(response, checks=CHECKS)

        run()


def test_generated_requests_reached_the_data() -> None:
    if not SEEN:
        pytest.skip("run together with test_generated_requests")
    ok_with_rows = {path: n for (path, status, rows), n in SEEN.items() if status == 200 and rows}
    assert ok_with_rows.get("/slots", 0) >= 5, SEEN
    assert ok_with_rows.get("/slots/summary", 0) >= 5, SEEN
    assert any(status == 422 for (_, status, _) in SEEN), SEEN
    assert not any(status >= 500 for (_, status, _) in SEEN), SEEN
