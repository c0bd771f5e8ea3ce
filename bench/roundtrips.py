"""DynamoDB round trips per API operation, through ``chalice.test.Client`` against moto.

The counter listens to botocore's ``before-send.dynamodb.<Operation>`` event, which fires once
per HTTP request actually sent, so retries count separately. PynamoDB creates a new botocore
session (``botocore.session.get_session()``) and client lazily for each connection, so there is
no single session to hook: the counter is added to ``botocore.handlers.BUILTIN_HANDLERS``, which
every botocore session registers when it is created. It is installed before the first
connection is made, once per process, by :func:`bench.stack.local_stack`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.baseline import Tree, last_line
from bench.stack import RequestCounter, local_stack

if TYPE_CHECKING:
    from tests.support.keyward_client import KeywardClient, Reply


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
    "enforcing MFA (PUT /org/mfa)": 2,
    "relaxing MFA (PUT /org/mfa)": 2,
}


@dataclass(frozen=True)
class Measurement:
    """The DynamoDB requests one HTTP call to keyward made, by DynamoDB API operation."""

    operation: str
    calls: Counter[str]
    # Why there is no figure: the code measured does not have the operation.
    missing: str | None = None

    @property
    def round_trips(self) -> int:
        return sum(self.calls.values())

    def to_json(self) -> dict:
        return {"operation": self.operation, "calls": dict(self.calls), "missing": self.missing}

    @classmethod
    def from_json(cls, found: dict) -> Measurement:
        return cls(found["operation"], Counter(found["calls"]), found["missing"])


def measure_operations() -> list[Measurement]:
    """On the local stack (moto in this process, as tests/conftest.py has it), run one member's MFA journey."""
    stack = local_stack()
    from chalice.test import Client

    from app import app
    from bench.stack import test_support

    KeywardClient = test_support("keyward_client").KeywardClient

    with Client(app) as chalice_client:
        return _journey(KeywardClient(client=chalice_client, idp=stack.idp), stack.counter, routes=set(app.routes))


def measure_operations_in(tree: Tree) -> list[Measurement] | str:
    """The same journey against another tree of keyward, in a process of its own; or why it could not run."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.worker", "roundtrips"],
        cwd=tree.root,
        env=environment,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return last_line(done.stderr)
    return [Measurement.from_json(found) for found in json.loads(done.stdout.splitlines()[-1])]


# Operations an older keyward may not have: the journey goes on without them.
LATER_ROUTES = {"step-up options": "/auth/reauth/options", "step-up verify": "/auth/reauth/verify"}


def _journey(api: KeywardClient, counter: RequestCounter, *, routes: set[str]) -> list[Measurement]:
    from bench.stack import test_support

    SoftwareAuthenticator = test_support("authenticator").SoftwareAuthenticator
    results: list[Measurement] = []

    def measure(operation: str, expected_status: int, call: Callable[[], Reply]) -> Reply | None:
        if operation in LATER_ROUTES and LATER_ROUTES[operation] not in routes:
            results.append(Measurement(operation, Counter(), missing=f"no {LATER_ROUTES[operation]} in this code"))
            return None
        before = counter.snapshot()
        reply = call()
        if reply.status != expected_status:
            raise RuntimeError(f"{operation}: expected HTTP {expected_status}, got {reply.status}: {reply.body}")
        results.append(Measurement(operation, counter.since(before)))
        return reply

    key = SoftwareAuthenticator()
    token = measure("login, first sign-in", 200, lambda: api.login_reply(org="bench", user="ada", admin=True)).body[
        "token"
    ]
    options = measure("registration options", 200, lambda: api.call("POST", "/me/mfa/keys/options", token=token)).body
    credential = key.register(options["publicKey"])
    measure(
        "registration verify",
        201,
        lambda: api.call(
            "POST",
            "/me/mfa/keys",
            token=token,
            body={"challenge_id": options["challenge_id"], "name": "Bench key", "credential": credential},
        ),
    )
    token = measure("login, returning member", 200, lambda: api.login_reply(org="bench", user="ada", admin=True)).body[
        "token"
    ]
    options = measure("MFA options", 200, lambda: api.call("POST", "/auth/mfa/options", token=token)).body
    assertion = key.authenticate(options["publicKey"])
    token = measure(
        "MFA verify",
        200,
        lambda: api.call(
            "POST",
            "/auth/mfa/verify",
            token=token,
            body={"challenge_id": options["challenge_id"], "credential": assertion},
        ),
    ).body["token"]
    step_up = measure("step-up options", 200, lambda: api.call("POST", "/auth/reauth/options", token=token))
    if step_up is None:
        measure("step-up verify", 200, lambda: api.call("POST", "/auth/reauth/verify", token=token))
    else:
        assertion = key.authenticate(step_up.body["publicKey"])
        measure(
            "step-up verify",
            200,
            lambda: api.call(
                "POST",
                "/auth/reauth/verify",
                token=token,
                body={"challenge_id": step_up.body["challenge_id"], "credential": assertion},
            ),
        )
    measure("authenticated GET /me", 200, lambda: api.call("GET", "/me", token=token))
    # Ada is the organization's admin, holds a key and has just stepped up; the organization holds
    # backup credentials, as it should before MFA is enforced.
    created = api.call("POST", "/org/backup-credentials", token=token)
    if created.status != 201:
        raise RuntimeError(f"creating backup credentials: expected HTTP 201, got {created.status}: {created.body}")
    measure(
        "enforcing MFA (PUT /org/mfa)", 200, lambda: api.call("PUT", "/org/mfa", token=token, body={"enforced": True})
    )
    measure(
        "relaxing MFA (PUT /org/mfa)", 200, lambda: api.call("PUT", "/org/mfa", token=token, body={"enforced": False})
    )
    if not any(result.round_trips for result in results):
        raise RuntimeError("no DynamoDB request was counted: the botocore hook was installed too late")
    return results
