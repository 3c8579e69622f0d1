"""GET /v1/openapi.json: valid OpenAPI 3.1, and every route and every option of the running app in it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import pytest
from openapi_spec_validator import validate

from exporters import registry
from service.app import create_app
from service.openapi import OPERATIONS, options_schema_name, problem_codes, undocumented_routes
from service.settings import Settings, parse_signing_keys
from storage.jobs import Records
from storage.local import LocalStorage
from tests.conftest import AUTH, TEST_API_KEYS, TEST_KEYS


@pytest.fixture
def app(tmp_path: Path, records: Records, storage: LocalStorage) -> falcon.App[Any, Any]:
    settings = Settings(signing_keys=parse_signing_keys(TEST_KEYS), data_dir=tmp_path, api_keys=TEST_API_KEYS,
                        public_url="http://exportd.test")  # fmt: skip
    return create_app(settings, records=records, storage=storage, enqueue=lambda job_id, queue: None)


def _document(app: falcon.App[Any, Any]) -> dict[str, Any]:
    result = falcon.testing.TestClient(app, headers=AUTH).simulate_get("/v1/openapi.json")
    assert result.status_code == 200 and result.headers["content-type"] == "application/json"
    return dict(result.json)


def test_the_document_is_valid_openapi_3_1(app: falcon.App[Any, Any]) -> None:
    document = _document(app)
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["servers"] == [{"url": "http://exportd.test"}]


def test_every_route_of_the_app_is_in_the_document(app: falcon.App[Any, Any]) -> None:
    document = _document(app)
    documented = {f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops}
    routed = {
        f"{m.method} {route.path}"
        for route in falcon.inspect.inspect_routes(app)
        for m in route.methods
        if not m.internal
    }
    assert routed == documented
    assert undocumented_routes(app) == []
    assert {
        "GET /v1/openapi.json",
        "GET /",
        "POST /v1/exports",
        "HEAD /v1/files/outputs/{job_id}/{name}",
    } <= routed


def test_a_route_added_without_a_declaration_is_reported(app: falcon.App[Any, Any]) -> None:
    class Webhooks:
        def on_post(self, req: falcon.Request, resp: falcon.Response) -> None: ...

    app.add_route("/v1/webhooks", Webhooks())
    assert undocumented_routes(app) == ["POST /v1/webhooks"]
    assert "/v1/webhooks" not in _document(app)["paths"]
    assert ("Webhooks", "POST") not in OPERATIONS


def test_every_option_of_every_conversion_is_in_the_document(app: falcon.App[Any, Any]) -> None:
    schemas = _document(app)["components"]["schemas"]
    referenced = {ref["$ref"].rsplit("/", 1)[-1] for ref in schemas["ExportOptions"]["anyOf"]}
    for conversion in registry.CONVERSIONS:
        name = options_schema_name(conversion)
        assert name in referenced
        schema = schemas[name]
        assert set(schema["properties"]) == {f.name for f in dataclasses.fields(conversion.options)}, name
        assert schema["additionalProperties"] is False
        for field in dataclasses.fields(conversion.options):
            prop = schema["properties"][field.name]
            assert prop["description"] == field.metadata["doc"]
            default = list(field.default) if isinstance(field.default, tuple) else field.default
            assert prop["default"] == default


def test_option_bounds_follow_the_service_limits(
    tmp_path: Path, records: Records, storage: LocalStorage
) -> None:
    settings = Settings(
        signing_keys=parse_signing_keys(TEST_KEYS),
        data_dir=tmp_path,
        max_output_side_px=1234,
        api_keys=TEST_API_KEYS,
    )
    document = _document(create_app(settings, records=records, storage=storage, enqueue=lambda j, q: None))
    width = document["components"]["schemas"]["image_to_webp_Options"]["properties"]["width"]
    assert width["maximum"] == 1234 and width["type"] == ["integer", "null"]


def test_problem_codes_come_from_the_error_table(app: falcon.App[Any, Any]) -> None:
    codes = problem_codes()
    assert "invalid_options" in codes[422] and "unsupported_conversion" in codes[422]
    assert "unsupported_input" in codes[415] and "payload_too_large" in codes[413]
    assert "invalid_signature" in codes[403] and "service_unavailable" in codes[503]
    export = _document(app)["paths"]["/v1/exports"]["post"]["responses"]
    assert "`unknown_upload`" in export["422"]["description"]
    assert export["503"]["headers"]["Retry-After"] == {"$ref": "#/components/headers/Retry-After"}
    assert export["202"]["headers"]["Location"]


def test_the_page_is_served_with_a_strict_policy(app: falcon.App[Any, Any]) -> None:
    client = falcon.testing.TestClient(app, headers=AUTH)
    page = client.simulate_get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    # No inline code: every script has a src, no element carries an on...= handler.
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/ui/app.js" defer>']
    assert not re.search(r"\son[a-z]+\s*=", page.text, re.I)
    assert client.simulate_get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    missing = client.simulate_get("/ui/..%2Fapp.py")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def test_every_keyed_operation_documents_the_bearer_scheme_and_its_refusals(
    app: falcon.App[Any, Any],
) -> None:
    document = _document(app)
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearer"]["description"]
    }  # fmt: skip
    keyed = 0
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if path.startswith("/v1/") and not path.startswith("/v1/files/"):
                keyed += 1
                assert operation["security"] == [{"bearer": []}], (method, path)
                answers = operation["responses"]
                assert {"401", "403", "429"} <= set(answers), (method, path)
                assert "WWW-Authenticate" in answers["401"]["headers"]
                assert {"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(
                    answers["429"]["headers"]
                )
                assert "`unauthorized`" in answers["401"]["description"]
                assert "`rate_limited`" in answers["429"]["description"]
                assert "`quota_exceeded`" in answers["429"]["description"]
            else:
                assert "security" not in operation and "401" not in operation["responses"], (method, path)
    assert keyed >= 7
    assert "get" in document["paths"]["/v1/exports"]
