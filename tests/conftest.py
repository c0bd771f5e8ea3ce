"""The test stack: moto's DynamoDB in this process, the local stage's environment, a dev IdP,
and empty tables for every test.

The environment is applied at import time, before any test module imports ``app``: keyward's
models read the DynamoDB endpoint and table names when they are first imported.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.idp import DevIdentityProvider
from tests.support.process_stack import forget_stream_records, prepared

_STACK = prepared()
IDP = _STACK.idp

# Only now, with the environment applied: these import keyward's models.
from chalicelib.base.config import settings  # noqa: E402
from chalicelib.provider import signing  # noqa: E402
from devstack.tables import truncate_tables  # noqa: E402
from tests.support.keyward_client import KeywardClient  # noqa: E402


@pytest.fixture(autouse=True)
def empty_tables() -> Iterator[None]:
    # Read the settings from this process's environment now: Chalice's test client patches a
    # stage's variables (.chalice/config.json's) into the environment for each request, and a test
    # that cleared the settings would otherwise have the next request read them from those.
    settings()
    truncate_tables()
    # The signing keys went with the tables: this process must not sign with its copy of them.
    signing.forget_keys()
    forget_stream_records()
    yield


@pytest.fixture
def idp() -> DevIdentityProvider:
    return IDP


@pytest.fixture
def api() -> KeywardClient:
    from chalice.test import Client

    from app import app

    with Client(app) as client:
        yield KeywardClient(client=client, idp=IDP)


@pytest.fixture
def stream():
    """The organizations table's stream, delivered to the stream function when a test drains it."""
    from app import end_sessions_on_enforcement
    from chalicelib.base.config import settings
    from devstack.stream import StreamPump

    return StreamPump(handler=end_sessions_on_enforcement, table_name=settings().tables.orgs, endpoint=_STACK.endpoint)


@pytest.fixture
def audit_stream():
    """The audit table's stream (the outbox), delivered to the delivery function when a test drains it."""
    from devstack.outbox import audit_stream_pump

    return audit_stream_pump(endpoint=_STACK.endpoint)


@pytest.fixture
def sent_mail():
    """The mail SES on moto accepts during the test, parsed."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    backend = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    backend.sent_messages.clear()
    return backend.sent_messages
