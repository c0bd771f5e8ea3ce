"""DynamoDB round trips per API operation, through ``chalice.test.Client`` against moto.

The counter listens to botocore's ``before-send.dynamodb.<Operation>`` event, which fires once
per HTTP request actually sent, so retries count separately. PynamoDB creates a new botocore
session (``botocore.session.get_session()``) and client lazily for each connection, so there is
no single session to hook: the counter is added to ``botocore.handlers.BUILTIN_HANDLERS``, which
every botocore session registers when it is created. It is installed before the first
connection is made, once per process, by :func:`bench.stack.local_stack`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from bench.stack import RequestCounter, local_stack

if TYPE_CHECKING:
    from tests.keyward_client import KeywardClient, Reply


# The floor of each operation: one read that brings everything it needs, one write of everything
# it changes (an authenticated read: the read alone). A first sign-in has no target: it creates
# the organization and the member.
TARGETS = {
    "login, returning member": 2,
    "registration options": 2,
    "registration verify": 2,
    "MFA options": 2,
    "MFA verify": 2,
    "step-up options": 2,
    "step-up verify": 2,
    "authenticated GET /me": 1,
}


@dataclass(frozen=True)
class Measurement:
    """The DynamoDB requests one HTTP call to keyward made, by DynamoDB API operation."""

    operation: str
    calls: Counter[str]

    @property
    def round_trips(self) -> int:
        return sum(self.calls.values())


def measure_operations() -> list[Measurement]:
    """On the local stack (moto in this process, as tests/conftest.py has it), run one member's MFA journey."""
    stack = local_stack()
    from chalice.test import Client

    from app import app
    from tests.keyward_client import KeywardClient

    with Client(app) as chalice_client:
        return _journey(KeywardClient(client=chalice_client, idp=stack.idp), stack.counter)


def _journey(api: KeywardClient, counter: RequestCounter) -> list[Measurement]:
    from tests.authenticator import SoftwareAuthenticator

    results: list[Measurement] = []

    def measure(operation: str, expected_status: int, call: Callable[[], Reply]) -> Reply:
        before = counter.snapshot()
        reply = call()
        if reply.status != expected_status:
            raise RuntimeError(f"{operation}: expected HTTP {expected_status}, got {reply.status}: {reply.body}")
        results.append(Measurement(operation, counter.since(before)))
        return reply

    key = SoftwareAuthenticator()
    token = measure("login, first sign-in", 200, lambda: api.login_reply(org="bench", user="ada")).body["token"]
    options = measure("registration options", 200, lambda: api.call("POST", "/me/mfa/keys/options", token=token)).body
    credential = key.register(options["publicKey"])
    measure("registration verify", 201, lambda: api.call(
        "POST", "/me/mfa/keys", token=token,
        body={"challenge_id": options["challenge_id"], "name": "Bench key", "credential": credential}))
    token = measure("login, returning member", 200, lambda: api.login_reply(org="bench", user="ada")).body["token"]
    options = measure("MFA options", 200, lambda: api.call("POST", "/auth/mfa/options", token=token)).body
    assertion = key.authenticate(options["publicKey"])
    token = measure("MFA verify", 200, lambda: api.call(
        "POST", "/auth/mfa/verify", token=token,
        body={"challenge_id": options["challenge_id"], "credential": assertion})).body["token"]
    options = measure("step-up options", 200, lambda: api.call("POST", "/auth/reauth/options", token=token)).body
    assertion = key.authenticate(options["publicKey"])
    measure("step-up verify", 200, lambda: api.call(
        "POST", "/auth/reauth/verify", token=token,
        body={"challenge_id": options["challenge_id"], "credential": assertion}))
    measure("authenticated GET /me", 200, lambda: api.call("GET", "/me", token=token))
    if not any(result.round_trips for result in results):
        raise RuntimeError("no DynamoDB request was counted: the botocore hook was installed too late")
    return results
