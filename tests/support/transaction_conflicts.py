"""DynamoDB's answer to a transaction that met another one on an item (``TransactionConflict``),
put on the wire: moto runs one request at a time and so never gives it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import botocore.endpoint
import pytest
from botocore.awsrequest import AWSResponse

# What a test's interceptor is given: the request about to be sent, and how to send it for real.
Send = Callable[[Any, Callable[[Any], Any]], Any]


def written_tables(request: Any) -> list[str] | None:
    """The table of each item a ``TransactWriteItems`` request writes, in order; None for any
    other request."""
    target = request.headers.get("X-Amz-Target", b"")
    if (target.decode() if isinstance(target, bytes) else target) != "DynamoDB_20120810.TransactWriteItems":
        return None
    return [next(iter(item.values()))["TableName"] for item in json.loads(request.body)["TransactItems"]]


def cancelled_by_conflict(request: Any, *, tables: list[str], on: str) -> AWSResponse:
    """DynamoDB's cancellation of the transaction, naming a conflict on each item of table ``on``."""
    reasons = [
        {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
        if table == on
        else {"Code": "None"}
        for table in tables
    ]
    body = {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
        "CancellationReasons": reasons,
    }
    return AWSResponse(
        request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(json.dumps(body).encode())
    )


def intercept(monkeypatch: pytest.MonkeyPatch, send: Send) -> None:
    """Every request botocore sends passes through ``send`` for the rest of the test."""
    real_send = botocore.endpoint.Endpoint._send
    monkeypatch.setattr(
        botocore.endpoint.Endpoint,
        "_send",
        lambda endpoint, request: send(request, lambda sent: real_send(endpoint, sent)),
    )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body
