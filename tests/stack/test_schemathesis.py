"""Property-based tests of every operation in the OpenAPI document against the running local stack
(``python -m devstack run``: chalice local over real HTTP, moto's DynamoDB).

Schemathesis generates requests from the document — valid ones and ones that break it — and
checks each answer: never a 5xx, a status the document lists for the operation, and a body that
conforms to the document's schema for that status. Four groups:

- public operations (``security: []``: the logins, ``/openapi.json``, the console), signed out;
- the other operations signed out: whatever Authorization header schemathesis makes up (or none)
  must get a documented refusal. Authentication comes first in every handler, so a few examples
  per operation do;
- the other operations with an ``active`` admin session, which reaches the handlers behind the
  authentication and the admin check;
- the MFA check and ``GET /me`` with an ``mfa_required`` session of a member who holds a key.

The examples are few so the file fits a CI run; docs/testing.md says how to run a longer campaign.
Every failure is a real finding: a 5xx, or an answer the document does not describe.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from chalicelib.api.openapi import DOCUMENT_PATH
from devstack.idp import DevIdentityProvider
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.local_stack import LocalStack, running_local_stack

# FUZZ_EXAMPLES=500 makes a longer, randomized run of the same tests (docs/testing.md); without it
# the run is short and the same every time.
LONGER_RUN = os.environ.get("FUZZ_EXAMPLES")
MAX_EXAMPLES = int(LONGER_RUN or 15)
SIGNED_OUT_EXAMPLES = 5 if LONGER_RUN is None else MAX_EXAMPLES
REQUEST_TIMEOUT_SECONDS = 30.0
FUZZ_ORG = "schemathesis"
FUZZ_ADMIN = "fuzz-admin"
KEY_HOLDER = "fuzz-key-holder"
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.response_schema_conformance,
]
# What ends the caller's own session: these get a session of their own for every example.
SESSION_ENDING_OPERATIONS = {"POST /auth/logout", "DELETE /me/sessions/{session_id}"}
# 401 codes that say the session itself is gone (other 401s are failed ceremonies).
SESSION_GONE_CODES = {"MissingToken", "InvalidToken", "SessionExpired", "SessionEndedByEnforcement"}


def _public_operation_ids() -> list[str]:
    document = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
    return sorted(
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and operation.get("security") == []
    )


def _load(*, coverage: bool = True, unexpected_methods: set[str] | None = None) -> schemathesis.BaseSchema:
    """The document, with a configuration of its own (each group's differs)."""
    loaded = schemathesis.openapi.from_path(DOCUMENT_PATH)
    # The coverage phase sends boundary values, missing fields and the like, whatever max_examples says.
    loaded.config.phases.coverage.enabled = coverage
    # It also sends methods the document does not list for a path; chalice routes those to 405
    # before any handler runs, so one group tries them. chalice local's HTTP server has no
    # handler at all for TRACE and QUERY and answers 501 itself (API Gateway does not offer
    # them either): those are left out everywhere.
    loaded.config.phases.coverage.unexpected_methods = unexpected_methods or set()
    return loaded


PUBLIC = _public_operation_ids()
public_schema = _load(unexpected_methods={"get", "put", "post", "delete", "options", "patch"}).include(
    operation_id=PUBLIC
)
signed_out_schema = _load(coverage=False).exclude(operation_id=PUBLIC)
signed_in_schema = _load().exclude(operation_id=PUBLIC)
# What a member who holds a key may call before the MFA check passes (beside logout).
mfa_required_schema = _load().include(operation_id=["mfaOptions", "mfaVerify", "whoAmI"])


def bounded(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
        derandomize=LONGER_RUN is None,
        print_blob=True,
    )


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_local_stack(tmp_path_factory.mktemp("local-stack-schemathesis")) as stack:
        yield stack


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # a proxy from the environment must not stand between us and localhost
        yield session


@pytest.fixture(scope="module")
def stack_idp() -> DevIdentityProvider:
    # The stack trusts the dev IdP whose key is kept in .devstack/, not the tests' ephemeral one.
    return DevIdentityProvider.load_or_create()


def _sign_in(
    http: requests.Session,
    stack: LocalStack,
    idp: DevIdentityProvider,
    *,
    user: str = FUZZ_ADMIN,
    admin: bool = True,
    state: str = "active",
) -> str:
    """A new session of ``user`` in an organization of the fuzz's own."""
    id_token = idp.mint(org=FUZZ_ORG, user=user, admin=admin, name=user.title(), email=f"{user}@{FUZZ_ORG}.example")
    reply = http.post(f"{stack.api}/auth/login", json={"id_token": id_token}, timeout=REQUEST_TIMEOUT_SECONDS)
    assert reply.status_code == 200, f"login of {user}: {reply.status_code} {reply.text}"
    assert reply.json()["state"] == state, f"login of {user}: {reply.text}"
    return reply.json()["token"]


@pytest.fixture(scope="module")
def key_holder(local_stack: LocalStack, http: requests.Session, stack_idp: DevIdentityProvider) -> str:
    """A member who registered a security key through the API: the organization's lists then hold
    a key, and the member's logins need the MFA check. The answers are checked against the
    document on the way (schemathesis cannot run a WebAuthn ceremony)."""
    document = schemathesis.openapi.from_path(DOCUMENT_PATH)
    headers = {"Authorization": f"Bearer {_sign_in(http, local_stack, stack_idp, user=KEY_HOLDER, admin=False)}"}
    options = http.post(f"{local_stack.api}/me/mfa/keys/options", headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
    assert options.status_code == 200, f"registration options: {options.status_code} {options.text}"
    document["/me/mfa/keys/options"]["POST"].validate_response(options)
    credential = SoftwareAuthenticator().register(options.json()["publicKey"], origin=local_stack.api)
    registered = http.post(
        f"{local_stack.api}/me/mfa/keys",
        headers=headers,
        timeout=REQUEST_TIMEOUT_SECONDS,
        json={"challenge_id": options.json()["challenge_id"], "name": "Fuzz key", "credential": credential},
    )
    assert registered.status_code == 201, f"key registration: {registered.status_code} {registered.text}"
    document["/me/mfa/keys"]["POST"].validate_response(registered)
    return KEY_HOLDER


@pytest.fixture(scope="module")
def admin_token(
    local_stack: LocalStack, http: requests.Session, stack_idp: DevIdentityProvider, key_holder: str
) -> str:
    # Nothing but the session-ending operations can end it: the admin holds no key, so enforcing
    # MFA is refused, and "end a member's sessions" spares the caller's own.
    return _sign_in(http, local_stack, stack_idp)


@pytest.fixture(scope="module")
def mfa_required_token(
    local_stack: LocalStack, http: requests.Session, stack_idp: DevIdentityProvider, key_holder: str
) -> str:
    # Stays mfa_required: schemathesis cannot produce an assertion that passes.
    return _sign_in(http, local_stack, stack_idp, user=key_holder, admin=False, state="mfa_required")


def _call(case: schemathesis.Case, stack: LocalStack, http: requests.Session) -> schemathesis.Response:
    return case.call_and_validate(base_url=stack.api, session=http, checks=CHECKS, timeout=REQUEST_TIMEOUT_SECONDS)


@public_schema.parametrize()
@bounded(MAX_EXAMPLES)
def test_public_operations(case: schemathesis.Case, local_stack: LocalStack, http: requests.Session) -> None:
    _call(case, local_stack, http)


@signed_out_schema.parametrize()
@bounded(SIGNED_OUT_EXAMPLES)
def test_without_a_session(case: schemathesis.Case, local_stack: LocalStack, http: requests.Session) -> None:
    response = _call(case, local_stack, http)
    assert response.status_code in (401, 415), f"{case.operation.label} without a session: {response.status_code}"


@signed_in_schema.parametrize()
@bounded(MAX_EXAMPLES)
def test_with_an_active_admin_session(
    case: schemathesis.Case,
    local_stack: LocalStack,
    http: requests.Session,
    stack_idp: DevIdentityProvider,
    admin_token: str,
) -> None:
    ends_session = case.operation.label in SESSION_ENDING_OPERATIONS
    token = _sign_in(http, local_stack, stack_idp) if ends_session else admin_token
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    response = _call(case, local_stack, http)
    if not ends_session and response.status_code == 401:
        # The shared session must survive whatever schemathesis sends, or every operation after
        # this one would be tested as if signed out.
        assert response.json().get("Code") not in SESSION_GONE_CODES, (
            f"{case.operation.label} ended the shared session: {response.status_code} {response.text}"
        )


@mfa_required_schema.parametrize()
@bounded(MAX_EXAMPLES)
def test_with_a_session_that_needs_the_mfa_check(
    case: schemathesis.Case, local_stack: LocalStack, http: requests.Session, mfa_required_token: str
) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {mfa_required_token}"}
    response = _call(case, local_stack, http)
    if response.status_code == 401:
        assert response.json().get("Code") not in SESSION_GONE_CODES, (
            f"{case.operation.label} ended the mfa_required session: {response.status_code} {response.text}"
        )
