"""Every route declares what it touches: a handler's signature names its group's deps record, the
endpoint passes exactly that record, and no handler reaches the app's services by itself."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest
from starlette.requests import Request

from batchin.core.context import CallContext
from batchin.http_api.app import all_endpoints
from batchin.http_api.endpoint import Endpoint

ENDPOINTS = all_endpoints()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[f"{e.method} {e.path}" for e in ENDPOINTS])
def test_the_handler_signature_matches_the_declared_deps(endpoint: Endpoint) -> None:
    hints = typing.get_type_hints(endpoint.handler)
    hints.pop("return", None)
    expected: list[object] = [Request]
    if not endpoint.public:
        expected.append(CallContext)
    if endpoint.deps is not None:
        expected.append(endpoint.deps)
    assert list(hints.values()) == expected
    assert len(inspect.signature(endpoint.handler).parameters) == len(expected)


def test_only_the_endpoint_looks_up_the_services() -> None:
    package = Path(__file__).resolve().parents[2] / "batchin"
    reaching = sorted(
        str(path.relative_to(package))
        for folder in ("http_api", "tools", "resources")
        for path in (package / folder).rglob("*.py")
        if "app.state.services" in path.read_text()
    )
    assert reaching == ["http_api/endpoint.py"]
