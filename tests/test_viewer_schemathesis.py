"""schemathesis against the server's own OpenAPI document: every operation with generated
parameters and bodies, valid ones and deliberately wrong ones, as an operator and as nobody:
never a server error (5xx), and every error in the one shape.

(schemathesis's pytest plugin does not run under pytest 9 here: its ``_nodeid`` lookup fails,
so each operation's Hypothesis strategy is driven directly.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from cim.cli.serve import CliPipeline
from cim.executor import SerialExecutor
from cim.store import Store
from tests.viewer_fixtures import City, build_city
from viewer.app import create_app
from viewer.state import ServerState

EXAMPLES = 40


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, City]]:
    city = build_city(tmp_path_factory.mktemp("fuzzed"))
    state = ServerState(Store.open(city.path), CliPipeline(), SerialExecutor())
    yield create_app(state), city
    state.close()


def operations(app: Any) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> list[str]:
    """Runs generated cases of one operation; the failures as text."""
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"code", "message", "detail"}, body
        except Exception as exc:
            failures.append(
                f"{case.method} {case.formatted_path} query={case.query} -> "
                f"{response.status_code} {response.text[:300]}: {type(exc).__name__}"
            )

    try:
        run()
    except Unsatisfiable:  # nothing to make wrong in an operation without parameters
        assert mode == GenerationMode.NEGATIVE
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("signed_in", [True, False], ids=["operator", "nobody"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(served: tuple[Any, City], signed_in: bool, mode: GenerationMode) -> None:
    app, city = served
    headers = {"Authorization": f"Bearer {city.operator}"} if signed_in else {}
    found = []
    for operation in operations(app):
        found += fuzz(operation, mode, headers)
    assert not found, "\n".join(found[:20])


def test_the_document_names_every_route(served: tuple[Any, City]) -> None:
    names = {f"{op.method.upper()} {op.path}" for op in operations(served[0])}
    assert {
        "GET /api/me",
        "GET /api/buildings",
        "GET /api/buildings/{building_id}",
        "POST /api/uploads",
        "GET /api/jobs/{job_id}/events",
        "GET /ogc/collections/{collection}/items",
    } <= names
