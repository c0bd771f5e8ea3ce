"""DynamoDB round trips per API operation, through ``chalice.test.Client`` against moto.

The counter listens to botocore's ``before-send.dynamodb.<Operation>`` event, which fires once
per HTTP request actually sent, so retries count separately. PynamoDB creates a new botocore
session (``botocore.session.get_session()``) and client lazily for each connection, so there is
no single session to hook: the counter is added to ``botocore.handlers.BUILTIN_HANDLERS``, which
every botocore session registers when it is created. It is installed before the first
connection is made.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from botocore import handlers

if TYPE_CHECKING:
    from tests.keyward_client import KeywardClient, Reply


@dataclass(frozen=True)
class Measurement:
    """The DynamoDB requests one HTTP call to keyward made, by DynamoDB API operation."""

    operation: str
    calls: Counter[str]

    @property
    def round_trips(self) -> int:
        return sum(self.calls.values())


class RequestCounter:
    """A botocore event handler counting DynamoDB requests by API operation."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, event_name: str, **_: Any) -> None:
        self.calls[event_name.rsplit(".", 1)[-1]] += 1


@contextlib.contextmanager
def counting_dynamodb_requests() -> Iterator[RequestCounter]:
    """Count the requests of every botocore session created inside the block."""
    counter = RequestCounter()
    spec = ("before-send.dynamodb", counter)
    handlers.BUILTIN_HANDLERS.append(spec)
    try:
        yield counter
    finally:
        handlers.BUILTIN_HANDLERS.remove(spec)


def measure_operations() -> list[Measurement]:
    """Start moto and the app as tests/conftest.py does, then run one member's MFA journey."""
    from devstack.dynamodb import server_endpoint, start_moto
    from devstack.environment import apply_environment, local_environment
    from devstack.idp import DevIdentityProvider

    with counting_dynamodb_requests() as counter:
        moto = start_moto(port=0)
        try:
            idp = DevIdentityProvider.ephemeral()
            # The models read the endpoint when first imported: environment first, then app.
            apply_environment(local_environment(endpoint=server_endpoint(moto), jwks_json=idp.jwks_json()))
            from devstack.tables import create_missing_tables

            create_missing_tables()
            from chalice.test import Client

            from app import app
            from tests.keyward_client import KeywardClient

            with Client(app) as chalice_client:
                return _journey(KeywardClient(client=chalice_client, idp=idp), counter)
        finally:
            moto.stop()


def _journey(api: KeywardClient, counter: RequestCounter) -> list[Measurement]:
    from tests.authenticator import SoftwareAuthenticator

    results: list[Measurement] = []

    def measure(operation: str, expected_status: int, call: Callable[[], Reply]) -> Reply:
        counter.calls.clear()
        reply = call()
        if reply.status != expected_status:
            raise RuntimeError(f"{operation}: expected HTTP {expected_status}, got {reply.status}: {reply.body}")
        results.append(Measurement(operation, Counter(counter.calls)))
        return reply

    key = SoftwareAuthenticator()
    token = measure("login, first sign-in", 200, lambda: api.login_reply(org="bench", user="ada")).body["token"]
    options = measure("registration options", 200, lambda: api.call("POST", "/me/mfa/keys/options", token=token)).body
    credential = key.register(options["publicKey"])
    measure("registration verify", 201, lambda: api.call(
        "POST", "/me/mfa/keys", token=token,
        body={"challenge_id": options["challenge_id"], "name": "Bench key", "credential": credential}))
    token = measure("login, member with a key", 200, lambda: api.login_reply(org="bench", user="ada")).body["token"]
    options = measure("MFA options", 200, lambda: api.call("POST", "/auth/mfa/options", token=token)).body
    assertion = key.authenticate(options["publicKey"])
    token = measure("MFA verify", 200, lambda: api.call(
        "POST", "/auth/mfa/verify", token=token,
        body={"challenge_id": options["challenge_id"], "credential": assertion})).body["token"]
    measure("authenticated GET /me", 200, lambda: api.call("GET", "/me", token=token))
    if not any(result.round_trips for result in results):
        raise RuntimeError("no DynamoDB request was counted: the botocore hook was installed too late")
    return results
