"""DynamoDB calls that get no answer at all (timeouts, refused connections) are a 503, never a 500."""

from __future__ import annotations

import botocore.client
import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from chalicelib.base.models import Session


@pytest.fixture
def unanswered(monkeypatch):
    """Make chosen DynamoDB operations fail without a response, as a timeout does."""
    real = botocore.client.BaseClient._make_api_call
    failing: set[str] = set()

    def call(client, operation, params):
        if operation in failing:
            raise (
                ReadTimeoutError(endpoint_url="http://dynamodb")
                if operation != "Query"
                else EndpointConnectionError(endpoint_url="http://dynamodb")
            )
        return real(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)
    return failing


def test_a_login_whose_write_times_out_is_a_503(api, unanswered):
    unanswered.add("TransactWriteItems")
    reply = api.login_reply()
    assert (reply.status, reply.code) == (503, "StorageUnavailable")
    assert list(Session.scan()) == []


def test_an_authenticated_read_that_times_out_is_a_503(api, unanswered):
    bob = api.login()
    unanswered.update({"TransactGetItems"})
    reply = api.call("GET", "/me", token=bob.token)
    assert (reply.status, reply.code) == (503, "StorageUnavailable")


def test_a_query_that_cannot_connect_is_a_503(api, unanswered):
    bob = api.login()
    unanswered.add("Query")
    reply = api.call("GET", "/me/mfa/keys", token=bob.token)
    assert (reply.status, reply.code) == (503, "StorageUnavailable")
