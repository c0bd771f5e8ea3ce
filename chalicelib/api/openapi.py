"""``GET /openapi.json``: the API's OpenAPI document.

The document is ``chalicelib/openapi.json``: inside ``chalicelib/`` because chalice packages that
directory whole into the Lambda, and ``docs/openapi.json`` is a copy for readers that
tests/contract/test_openapi.py keeps identical. It is read once per process, on the first request, and
served exactly as stored.
"""

from __future__ import annotations

import functools
from pathlib import Path

from chalice import Blueprint, Response

DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "openapi.json"

openapi = Blueprint(__name__)


@functools.cache
def document_text() -> str:
    return DOCUMENT_PATH.read_text(encoding="utf-8")


@openapi.route("/openapi.json", methods=["GET"])
def openapi_document() -> Response:
    return Response(body=document_text(), status_code=200, headers={"Content-Type": "application/json"})
