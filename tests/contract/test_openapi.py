"""The OpenAPI document: valid, complete, and the one the API serves.

``chalicelib/openapi.json`` is the document (chalice packages ``chalicelib/`` into the Lambda, so
``GET /openapi.json`` can serve it); ``docs/openapi.json`` is a copy for readers, kept identical
here. Edit the first, then ``cp chalicelib/openapi.json docs/openapi.json``.

The document describes every route of the app — the API, the console and ``/openapi.json``
itself — except the dev-only routes in ``DEV_ONLY_ROUTES``: they exist only on a stage that holds
the dev IdP's private key (``KEYWARD_DEV_IDP_KEY_FILE``, the local stage), never in a deployment,
so they are no part of the API's contract.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from chalicelib.api.http import _STATUS_BY_KIND
from chalicelib.api.openapi import DOCUMENT_PATH
from chalicelib.base import errors
from tests.support.local_stack import PROJECT_ROOT

DOCS_COPY = PROJECT_ROOT / "docs" / "openapi.json"
# Routes the app registers that the document leaves out on purpose, each with the reason.
DEV_ONLY_ROUTES = {
    ("/dev/id-token", "POST"): "the console's demo sign-in; registered only where the dev IdP's key is configured",
    (
        "/dev/outbox",
        "GET",
    ): "the local outbox (mail SES on moto accepted); registered only where KEYWARD_AWS_ENDPOINT is set",
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _document() -> dict:
    return json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))


def _documented_operations(document: dict) -> set[tuple[str, str]]:
    return {
        (path, method.upper()) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS
    }


def test_the_document_is_valid_openapi():
    document = _document()
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_the_document_sits_where_the_lambda_package_takes_it_from():
    # chalice packages app.py and chalicelib/ whole; nothing outside reaches the Lambda.
    assert DOCUMENT_PATH.resolve().parent == (PROJECT_ROOT / "chalicelib").resolve()


def test_the_copy_in_docs_is_identical():
    assert DOCS_COPY.read_bytes() == Path(DOCUMENT_PATH).read_bytes(), (
        "docs/openapi.json differs from chalicelib/openapi.json: cp chalicelib/openapi.json docs/openapi.json"
    )


def test_the_document_describes_exactly_the_routes_of_the_app():
    from app import app

    routed = {(path, method) for path, methods in app.routes.items() for method in methods}
    documented = _documented_operations(_document())

    assert not documented & set(DEV_ONLY_ROUTES), "dev-only routes must stay out of the document"
    missing = sorted(routed - documented - set(DEV_ONLY_ROUTES))
    assert not missing, f"routes the document does not describe: {missing}"
    stale = sorted(documented - routed)
    assert not stale, f"operations the document describes but the app does not route: {stale}"


def test_every_operation_has_an_id_a_security_requirement_and_the_statuses_every_route_can_answer():
    document = _document()
    operation_ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            where = f"{method.upper()} {path}"
            operation_ids.append(operation["operationId"])
            assert operation["security"] in ([], [{"bearerAuth": []}]), where
            assert {status for status in operation["responses"] if status.startswith("5")} <= {"503"}, where
            # Chalice answers 415 on every route whose request names another Content-Type.
            assert "415" in operation["responses"], where
            if operation["security"]:
                assert {"401", "503"} <= set(operation["responses"]), where
            body = operation.get("requestBody")
            # The OAuth endpoints take forms (RFC 6749 §3.2, OIDC Core §3.1.2.1), whose fields OAuth
            # ignores when it does not know them.
            if body is not None and "application/json" in body["content"]:
                # The API refuses unknown fields, and the document says so.
                schema = body["content"]["application/json"]["schema"]
                name = schema["$ref"].rsplit("/", 1)[1]
                assert document["components"]["schemas"][name].get("additionalProperties") is False, where
                assert {"400", "413"} <= set(operation["responses"]), where
            elif body is not None:
                # The OAuth endpoints take forms, whose unknown parameters OAuth ignores (RFC 6749 §3.1),
                # and answer every malformed request with 400 invalid_request.
                assert set(body["content"]) == {"application/x-www-form-urlencoded"}, where
                assert "400" in operation["responses"], where
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"


def test_every_reason_code_is_documented_under_its_status():
    responses = _document()["components"]["responses"]
    statuses = {kind: status for kind, status in _STATUS_BY_KIND}
    codes = [
        refusal
        for refusal in vars(errors).values()
        if isinstance(refusal, type)
        and issubclass(refusal, errors.Refusal)
        and refusal.__module__ == errors.__name__
        and not refusal.__subclasses__()
    ]
    assert codes
    undocumented = []
    for refusal in codes:
        status = next(status for kind, status in statuses.items() if issubclass(refusal, kind))
        if f"`{refusal.__name__}`" not in responses[f"Error{status}"]["description"]:
            undocumented.append(f"{status} {refusal.__name__}")
    assert not undocumented, f"reason codes missing from the document's error responses: {undocumented}"


def test_the_api_serves_the_document_as_stored(api):
    served = api.client.http.get("/openapi.json")

    assert served.status_code == 200
    assert served.headers["Content-Type"] == "application/json"
    assert served.body == DOCUMENT_PATH.read_bytes()


@pytest.mark.parametrize("route", sorted(DEV_ONLY_ROUTES))
def test_the_dev_only_allowlist_names_routes_the_local_stage_has(route):
    from app import app

    path, method = route
    # The test process configures the dev IdP's key, as the local stage does; a deployment doesn't.
    assert method in app.routes.get(path, {}), f"{method} {path} is no longer routed; drop it from DEV_ONLY_ROUTES"
