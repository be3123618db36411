"""The OpenAPI description covers every route and method the app serves."""

import pytest
from falcon.routing import map_http_methods

from api.app import routes
from api.auth import is_public
from api.openapi import SPEC, WEBSOCKET_PATHS
from api.store import RecordStore
from common.config import Config

IGNORED = {"OPTIONS"}  # Falcon answers OPTIONS on every route by itself


def served_routes() -> dict[str, set[str]]:
    """Every route template with the HTTP methods its resource really implements."""
    out = {}
    for template, resource, suffix in routes(
        Config(), None, None, None, RecordStore.__new__(RecordStore), None
    ):
        methods = {m for m, responder in map_http_methods(resource, suffix=suffix).items()}
        if template in WEBSOCKET_PATHS:
            methods = (
                {"GET"}
                if hasattr(resource, f"on_websocket_{suffix}" if suffix else "on_websocket")
                else set()
            )
        out[template] = methods - IGNORED
    return out


def test_every_route_and_method_is_in_the_openapi_description():
    documented = {path: {m.upper() for m in ops if m != "parameters"} for path, ops in SPEC["paths"].items()}
    for template, methods in served_routes().items():
        assert template in documented, f"{template} is missing from the OpenAPI description"
        assert methods <= documented[template], f"{template}: {methods - documented[template]} undocumented"
    assert set(documented) == set(served_routes()), "the description names routes the app does not serve"


@pytest.mark.in_process
def test_the_description_is_served_without_a_token(anonymous_client):
    response = anonymous_client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json() == SPEC
    assert response.json()["openapi"].startswith("3.")


def test_the_routes_described_as_needing_no_token_are_exactly_those_of_public_resources():
    # api/auth.py denies by default: a resource answers without a token only if it says `public`.
    for template, resource, _ in routes(Config(), None, None, None, RecordStore.__new__(RecordStore), None):
        operations = [op for method, op in SPEC["paths"][template].items() if method != "parameters"]
        described_public = {op.get("security") == [] for op in operations}
        assert described_public == {is_public(resource)}, template
