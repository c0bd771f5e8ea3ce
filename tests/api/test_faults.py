"""DynamoDB faults: throttling, internal errors and cancelled transactions, injected on the wire.

Faults are HTTP error responses that stand in for DynamoDB's own (see :class:`DynamoDBFaults`):
botocore parses them and retries them exactly as it would on AWS (PynamoDB's
``max_retry_attempts=2``: three attempts per call), so a fault either is absorbed by the retries
or reaches keyward as the PynamoDB error a real one would raise. A fault stands for a request
DynamoDB refused: it never did the work.

What must hold: every API call answers as it would without the fault or with 503
``StorageUnavailable`` — never a 500 — and a 503 means nothing was changed; a registration
never stores a key without its member's counter and its credential claim; an MFA verify that
does not answer 200 leaves the session as it was; an enforcement takes effect entirely or not at
all; and the stream function finishes the clean-up once the fault clears.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time as _time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import botocore.endpoint
import botocore.retries.quota
import pytest
from botocore.awsrequest import AWSResponse

from app import end_sessions_on_enforcement
from chalicelib.background import invalidation
from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.models import (
    ALL_MODELS,
    AuditEvent,
    BackupCredential,
    CredentialClaim,
    Member,
    Organization,
    SecurityKey,
    Session,
)
from devstack.stream import MAX_DELIVERY_ATTEMPTS, StreamPump
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.key_use import stored_key as key_in_use
from tests.support.keyward_client import KeywardClient, Reply
from tests.support.keyward_client import Member as Signed
from tests.support.sessions import org_sessions

THROTTLED = "ProvisionedThroughputExceededException"
INTERNAL = "InternalServerError"
CANCELLED = "TransactionCanceledException"  # with a ThrottlingError reason: DynamoDB's throttling of a transaction
TRANSACTIONS = frozenset({"TransactWriteItems", "TransactGetItems"})
ATTEMPTS = 3  # PynamoDB's max_retry_attempts=2, in botocore's standard retry mode


# --- the fault injector -------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One DynamoDB API call keyward made (its attempts share the call's index)."""

    index: int
    operation: str


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class _TimeWithoutSleep:
    """``time`` for botocore's retry loop and the stream function's backoff: no waiting in tests."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        pass


class DynamoDBFaults:
    """Replaces chosen DynamoDB responses with DynamoDB's error responses.

    It wraps ``botocore.endpoint.Endpoint._send``, the one place every botocore client sends an
    HTTP request (PynamoDB's clients are made lazily and per thread, so no single client or
    session can be hooked). Retries are recognized by botocore's ``amz-sdk-request: attempt=N``
    header; a call's decision is made at its first attempt and applies to all of its attempts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = threading.local()
        self._decide: Callable[[Call, int], str | None] | None = None
        self.calls: list[Call] = []
        self.injected: Counter[str] = Counter()
        self.paused = False

    # -- choosing faults ------------------------------------------------------------------------

    def clear(self) -> None:
        self._decide = None

    def always(self, *operations: str, code: str = THROTTLED) -> None:
        """Every attempt of every call of these operations (of all, when none is named) fails."""
        self._decide = lambda call, attempt: code if not operations or call.operation in operations else None

    def fail_when(self, decide: Callable[[Call, int], str | None]) -> None:
        """``decide(call, attempt)`` names the error for an attempt, or None to let it through."""
        self._decide = decide

    def fail_call(self, index: int, *, code: str | None = None) -> None:
        """Every attempt of the call with this index fails (the index counts from 0 for the first call)."""
        self._decide = lambda call, attempt: (code or _code_for(call.operation, index)) if call.index == index else None

    def first_attempts(self, *, codes: tuple[str, ...] = (THROTTLED, INTERNAL)) -> None:
        """Every call's first attempt fails with a retryable error; the retry gets through."""
        self._decide = lambda call, attempt: codes[call.index % len(codes)] if attempt == 1 else None

    def at_random(
        self, rng: random.Random, *, down: float, flaky: float, operations: frozenset[str] | None = None
    ) -> None:
        """Each call (of these operations) is down (every attempt fails) with probability ``down``,
        flaky (only its first attempt fails) with probability ``flaky``."""
        decisions: dict[int, tuple[str, int]] = {}

        def decide(call: Call, attempt: int) -> str | None:
            if operations is not None and call.operation not in operations:
                return None
            if call.index not in decisions:
                roll = rng.random()
                code = rng.choice(
                    [THROTTLED, INTERNAL, CANCELLED] if call.operation in TRANSACTIONS else [THROTTLED, INTERNAL]
                )
                decisions[call.index] = (code, ATTEMPTS if roll < down else 1 if roll < down + flaky else 0)
            code, failing_attempts = decisions[call.index]
            return code if attempt <= failing_attempts else None

        self._decide = decide

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Look at the tables without faults (and without counting the calls)."""
        self.paused = True
        try:
            yield
        finally:
            self.paused = False

    def calls_since(self, start: int) -> list[Call]:
        return self.calls[start:]

    # -- the wire -------------------------------------------------------------------------------

    def send(self, endpoint: botocore.endpoint.Endpoint, request: Any, real: Callable[[Any], Any]) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        if self.paused or not target.startswith("DynamoDB_20120810."):
            return real(request)
        operation = target.split(".", 1)[1]
        attempt = _attempt(request)
        with self._lock:
            if attempt == 1:
                self._current.call = Call(len(self.calls), operation)
                self.calls.append(self._current.call)
            call = getattr(self._current, "call", None) or Call(len(self.calls), operation)
            code = self._decide(call, attempt) if self._decide else None
            if code:
                self.injected[code] += 1
        return _error_response(request, code, operation) if code else real(request)


def _code_for(operation: str, index: int) -> str:
    if operation in TRANSACTIONS and index % 3 == 2:
        return CANCELLED
    return INTERNAL if index % 2 else THROTTLED


def _attempt(request: Any) -> int:
    header = request.headers.get("amz-sdk-request", b"")
    header = header.decode() if isinstance(header, bytes) else header
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "attempt" and value.isdigit():
            return int(value)
    return 1


def _error_response(request: Any, code: str, operation: str) -> AWSResponse:
    """DynamoDB's answer for ``code``, as its JSON protocol sends it."""
    body: dict[str, Any] = {
        "__type": f"com.amazonaws.dynamodb.v20120810#{code}",
        "message": f"injected fault ({operation})",
    }
    status = {INTERNAL: 500, "ServiceUnavailable": 503}.get(code, 400)
    if code == CANCELLED:
        sent = request.body.decode() if isinstance(request.body, bytes) else request.body
        items = json.loads(sent)["TransactItems"]
        body["CancellationReasons"] = [
            {"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity."}
        ] + [{"Code": "None"} for _ in items[1:]]
        body["message"] = (
            "Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError]"
        )
    headers = {"x-amzn-RequestId": "injected-fault", "Content-Type": "application/x-amz-json-1.0"}
    return AWSResponse(request.url, status, headers, _Raw(json.dumps(body).encode()))


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBFaults]:
    injector = DynamoDBFaults()
    real_send = botocore.endpoint.Endpoint._send

    def send(endpoint: botocore.endpoint.Endpoint, request: Any) -> Any:
        return injector.send(endpoint, request, lambda prepared: real_send(endpoint, prepared))

    monkeypatch.setattr(botocore.endpoint.Endpoint, "_send", send)
    # Retries without waiting, and without botocore's retry quota, which long-lived clients
    # would otherwise use up over many faults: every call gets its three attempts.
    monkeypatch.setattr(botocore.endpoint, "time", _TimeWithoutSleep())
    monkeypatch.setattr(botocore.retries.quota.RetryQuota, "acquire", lambda self, capacity_amount: True)
    monkeypatch.setattr(invalidation, "time", _TimeWithoutSleep())
    monkeypatch.setattr("devstack.stream.time", _TimeWithoutSleep())
    yield injector
    injector.clear()


# --- what the tables hold -----------------------------------------------------------------------

Items = dict[str, list[dict[str, Any]]]  # table name → raw items


def _keys_of(model: Any) -> list[str]:
    return [a.attr_name for a in model.get_attributes().values() if a.is_hash_key or a.is_range_key]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=lambda v: v.hex() if isinstance(v, bytes) else sorted(v))


class Tables:
    """All of keyward's tables, read and put back with plain botocore calls (while faults are off)."""

    def __init__(self) -> None:
        import boto3

        self._client = boto3.client(
            "dynamodb", endpoint_url=settings().dynamodb_endpoint, region_name=settings().region
        )

    def read(self) -> Items:
        items: Items = {}
        for model in ALL_MODELS:
            table = model.Meta.table_name
            pages = self._client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
            found = [item for page in pages for item in page["Items"]]
            keys = _keys_of(model)
            items[table] = sorted(found, key=lambda item: _canonical([item[k] for k in keys]))
        return items

    def restore(self, saved: Items, current: Items) -> None:
        """Put every table that changed back as it was."""
        for model in ALL_MODELS:
            table = model.Meta.table_name
            if current[table] == saved[table]:
                continue
            keys = _keys_of(model)
            requests = [{"DeleteRequest": {"Key": {k: item[k] for k in keys}}} for item in current[table]]
            requests += [{"PutRequest": {"Item": item}} for item in saved[table]]
            for i in range(0, len(requests), 25):
                # A delete and a put of the same key may not share a batch: deletes go first, alone.
                self._write(table, requests[i : i + 25])

    def _write(self, table: str, requests: list[dict[str, Any]]) -> None:
        deletes = [r for r in requests if "DeleteRequest" in r]
        puts = [r for r in requests if "PutRequest" in r]
        for part in (deletes, puts):
            pending = {table: part} if part else {}
            while pending:
                pending = self._client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def meaningful_state(items: Items) -> dict[str, Any]:
    """What a request that answers 503 must leave as it was.

    Left out: challenges (a failed request may have used one up or left one to expire), throttle
    counters (a failed backup login may keep its reserved slot), the upsert of the organization and
    member every login makes before the session, and bookkeeping times (``last_seen_at``,
    ``last_used_at`` of backup credentials).
    """

    def table(model: Any) -> list[dict[str, Any]]:
        return items[model.Meta.table_name]

    def without(item: dict[str, Any], *names: str) -> str:
        return _canonical({k: v for k, v in item.items() if k not in names})

    def key(item: dict[str, Any], model: Any) -> str:
        return "/".join(next(iter(item[k].values())) for k in _keys_of(model))

    def default_org(org: dict[str, Any]) -> bool:
        return (
            org.get("mfa_enforced", {}).get("BOOL") is not True
            and org.get("enforcement_generation", {}).get("N", "0") == "0"
            and "invalidation" not in org
            and "backup_key_ids" not in org
        )

    return {
        "orgs": {key(o, Organization): without(o, "created_at") for o in table(Organization) if not default_org(o)},
        "key counts": {
            key(m, Member): m["key_count"]["N"] for m in table(Member) if m.get("key_count", {}).get("N", "0") != "0"
        },
        "keys": {key(k, SecurityKey): without(k) for k in table(SecurityKey)},
        "claims": {key(c, CredentialClaim): without(c) for c in table(CredentialClaim)},
        "sessions": {key(s, Session): without(s, "last_seen_at") for s in table(Session)},
        "backup credentials": {key(c, BackupCredential): without(c, "last_used_at") for c in table(BackupCredential)},
        "audit": sorted(
            (e["org_id"]["S"], e["action"]["S"], e.get("target", {}).get("S", "")) for e in table(AuditEvent)
        ),
    }


def _differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    found = []
    for part in before:
        if before[part] != after[part]:
            if isinstance(before[part], dict):
                changed = sorted(
                    str(k) for k in set(before[part]) | set(after[part]) if before[part].get(k) != after[part].get(k)
                )
                found.append(f"{part}: {', '.join(changed)}")
            else:
                found.append(f"{part}: {sorted(set(after[part]) ^ set(before[part]))}")
    return found


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _session_id(token: str) -> str:
    return token.split(".")[3]


def _events(org: str, action: str) -> list[AuditEvent]:
    return [e for e in logged_events(org) if e.action == action]


def assert_refused_cleanly(reply: Reply, *, expected: set[int], what: str) -> None:
    """The reply is one of ``expected`` or a 503 StorageUnavailable; never a 500."""
    assert reply.status != 500, f"{what}: 500 {reply.body}"
    assert reply.status in expected | {503}, f"{what}: {reply.status} {reply.body}"
    if reply.status == 503:
        assert reply.code == "StorageUnavailable", f"{what}: {reply.body}"
        assert "nothing was changed" in reply.body["Message"], f"{what}: {reply.body}"


# --- the API's journeys, one call at a time ------------------------------------------------------


@dataclass
class Scenario:
    """A call under test, after a setup made without faults."""

    name: str
    setup: Callable[[KeywardClient], dict[str, Any]]
    act: Callable[[KeywardClient, dict[str, Any]], Reply]
    status: int


def _member_with_key(api: KeywardClient, *, org: str = "acme", user: str = "bob", admin: bool = False) -> Signed:
    member = api.login(org=org, user=user, admin=admin)
    assert api.add_key(member).status == 201
    return api.mfa_login(org=org, user=user, authenticator=member.authenticators[0], admin=admin)


def _admin(api: KeywardClient, org: str = "acme") -> Signed:
    return _member_with_key(api, org=org, user="alice", admin=True)


def _prepared_registration(api: KeywardClient, member: Signed) -> dict[str, Any]:
    options = api.registration_options(member)
    assert options.status == 200, options.body
    authenticator = SoftwareAuthenticator()
    return {
        "member": member,
        "body": {
            "challenge_id": options.body["challenge_id"],
            "name": "New key",
            "credential": authenticator.register(options.body["publicKey"]),
        },
    }


def _prepared_verify(api: KeywardClient) -> dict[str, Any]:
    holder = _member_with_key(api)
    member = api.login(user="bob")
    options = api.mfa_options(member)
    credential = holder.authenticators[0].authenticate(options.body["publicKey"])
    return {"member": member, "body": {"challenge_id": options.body["challenge_id"], "credential": credential}}


def _enforced_registration(api: KeywardClient) -> dict[str, Any]:
    admin = _admin(api)
    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    member = api.login(user="dave")
    assert member.state == "registration_required"
    return _prepared_registration(api, member)


def _key_holder_logged_in(api: KeywardClient) -> dict[str, Any]:
    _member_with_key(api)
    return {"member": api.login(user="bob")}


def _enforcing_admin(api: KeywardClient) -> dict[str, Any]:
    admin = _admin(api)
    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    return {"admin": admin}


def _with_other_sessions(api: KeywardClient) -> dict[str, Any]:
    admin = _admin(api)
    bob = _member_with_key(api)
    api.mfa_login(
        org="acme", user="bob", authenticator=bob.authenticators[0]
    )  # a second session, verified with the key
    key_id = api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"][0]["id"]
    return {"admin": admin, "bob": bob, "key_id": key_id}


def _backup(api: KeywardClient) -> dict[str, Any]:
    admin = _admin(api)
    created = api.call("POST", "/org/backup-credentials", token=admin.token)
    assert created.status == 201, created.body
    return {"admin": admin, "key_id": created.body["key_id"], "secret": created.body["secret"]}


def _post(
    path: str, body: Callable[[dict[str, Any]], Any] | None = None, *, who: str = "member"
) -> Callable[[KeywardClient, dict[str, Any]], Reply]:
    return lambda api, ctx: api.call(
        "POST", path, token=ctx[who].token if who else None, body=body(ctx) if body else None
    )


SCENARIOS = [
    Scenario("login, first sign-in", lambda api: {}, lambda api, ctx: api.login_reply(user="bob"), 200),
    Scenario(
        "login, key holder",
        lambda api: {"bob": _member_with_key(api)},
        lambda api, ctx: api.login_reply(user="bob"),
        200,
    ),
    Scenario("registration options", lambda api: {"member": api.login(user="bob")}, _post("/me/mfa/keys/options"), 200),
    Scenario(
        "register a key",
        lambda api: _prepared_registration(api, api.login(user="bob")),
        _post("/me/mfa/keys", lambda ctx: ctx["body"]),
        201,
    ),
    Scenario(
        "register the first key under enforcement",
        _enforced_registration,
        _post("/me/mfa/keys", lambda ctx: ctx["body"]),
        201,
    ),
    Scenario("MFA options", lambda api: _key_holder_logged_in(api), _post("/auth/mfa/options"), 200),
    Scenario("MFA verify", _prepared_verify, _post("/auth/mfa/verify", lambda ctx: ctx["body"]), 200),
    Scenario(
        "GET /me",
        lambda api: {"member": _member_with_key(api)},
        lambda api, ctx: api.call("GET", "/me", token=ctx["member"].token),
        200,
    ),
    Scenario(
        "GET /me/mfa/keys",
        lambda api: {"member": _member_with_key(api)},
        lambda api, ctx: api.call("GET", "/me/mfa/keys", token=ctx["member"].token),
        200,
    ),
    Scenario(
        "GET /me/sessions",
        lambda api: {"member": _member_with_key(api)},
        lambda api, ctx: api.call("GET", "/me/sessions", token=ctx["member"].token),
        200,
    ),
    Scenario(
        "rename a key",
        lambda api: _with_other_sessions(api),
        lambda api, ctx: api.call(
            "PATCH", f"/me/mfa/keys/{ctx['key_id']}", token=ctx["bob"].token, body={"name": "Renamed"}
        ),
        200,
    ),
    Scenario(
        "delete a key",
        lambda api: _with_other_sessions(api),
        lambda api, ctx: api.call("DELETE", f"/me/mfa/keys/{ctx['key_id']}", token=ctx["bob"].token),
        204,
    ),
    Scenario(
        "disable MFA",
        lambda api: _with_other_sessions(api),
        lambda api, ctx: api.call("DELETE", "/me/mfa", token=ctx["bob"].token),
        204,
    ),
    Scenario(
        "end one of one's sessions",
        lambda api: {"member": _member_with_key(api), "other": api.login(user="bob")},
        lambda api, ctx: api.call(
            "DELETE", f"/me/sessions/{_session_id(ctx['other'].token)}", token=ctx["member"].token
        ),
        204,
    ),
    Scenario("log out", lambda api: {"member": _member_with_key(api)}, _post("/auth/logout"), 204),
    Scenario(
        "enforce MFA",
        lambda api: _with_other_sessions(api),
        lambda api, ctx: api.call(
            "PUT", "/org/mfa", token=ctx["admin"].token, body={"enforced": True, "without_backup_credentials": True}
        ),
        200,
    ),
    Scenario(
        "relax MFA",
        lambda api: _enforcing_admin(api),
        lambda api, ctx: api.call("PUT", "/org/mfa", token=ctx["admin"].token, body={"enforced": False}),
        200,
    ),
    Scenario(
        "change the grace period and the enrolment policy",
        _enforcing_admin,
        lambda api, ctx: api.call(
            "PUT",
            "/org/mfa",
            token=ctx["admin"].token,
            body={
                "enforced": True,
                "without_backup_credentials": True,
                "grace_period_hours": 24,
                "enrollment": "pass_required",
            },
        ),
        200,
    ),
    Scenario(
        "GET /org/mfa",
        lambda api: _with_other_sessions(api),
        lambda api, ctx: api.call("GET", "/org/mfa", token=ctx["admin"].token),
        200,
    ),
    Scenario(
        "GET /org/members",
        lambda api: _with_other_sessions(api),
        lambda api, ctx: api.call("GET", "/org/members", token=ctx["admin"].token),
        200,
    ),
    Scenario(
        "GET /org/mfa/keys",
        lambda api: _with_other_sessions(api),
        lambda api, ctx: api.call("GET", "/org/mfa/keys", token=ctx["admin"].token),
        200,
    ),
    Scenario(
        "GET /org/audit",
        lambda api: _with_other_sessions(api),
        lambda api, ctx: api.call("GET", "/org/audit", token=ctx["admin"].token),
        200,
    ),
    Scenario(
        "an admin deletes a member's key",
        lambda api: _with_other_sessions(api),
        lambda api, ctx: api.call("DELETE", f"/org/members/bob/mfa/keys/{ctx['key_id']}", token=ctx["admin"].token),
        204,
    ),
    Scenario(
        "an admin ends a member's sessions",
        lambda api: _with_other_sessions(api),
        lambda api, ctx: api.call("DELETE", "/org/members/bob/sessions", token=ctx["admin"].token),
        204,
    ),
    Scenario(
        "create backup credentials",
        lambda api: {"admin": _admin(api)},
        lambda api, ctx: api.call("POST", "/org/backup-credentials", token=ctx["admin"].token),
        201,
    ),
    Scenario(
        "list backup credentials",
        _backup,
        lambda api, ctx: api.call("GET", "/org/backup-credentials", token=ctx["admin"].token),
        200,
    ),
    Scenario(
        "backup login",
        _backup,
        _post("/auth/backup-login", lambda ctx: {"key_id": ctx["key_id"], "secret": ctx["secret"]}, who=""),
        200,
    ),
    Scenario(
        "backup login with a wrong secret",
        _backup,
        _post("/auth/backup-login", lambda ctx: {"key_id": ctx["key_id"], "secret": "wrong"}, who=""),
        401,
    ),
    Scenario(
        "delete backup credentials",
        _backup,
        lambda api, ctx: api.call("DELETE", f"/org/backup-credentials/{ctx['key_id']}", token=ctx["admin"].token),
        204,
    ),
]


def _labels(calls: list[Call]) -> list[str]:
    seen: Counter[str] = Counter()
    labels = []
    for call in calls:
        seen[call.operation] += 1
        labels.append(f"{call.operation}#{seen[call.operation]}")
    return labels


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_when_any_one_dynamodb_call_fails_the_reply_is_503_and_nothing_changed(api, faults, scenario):
    """For every DynamoDB call the request makes, in turn: that call fails on every attempt.

    The request then answers 503 with nothing changed, or — when keyward can do without the call
    — as it would have anyway. Never a 500.
    """
    context = scenario.setup(api)
    tables = Tables()
    with faults.suspended():
        saved = tables.read()
    before = meaningful_state(saved)
    start = len(faults.calls)
    dry = scenario.act(api, context)
    assert dry.status == scenario.status, f"without faults: {dry.status} {dry.body}"
    labels = _labels(faults.calls_since(start))
    assert labels, "the request made no DynamoDB call"

    # Each call in turn fails, from the state the setup left, put back after every round: the
    # context (tokens, prepared ceremony responses) stays valid, and setting up again would cost
    # far more DynamoDB calls than the request under test.
    with faults.suspended():
        tables.restore(saved, tables.read())
    problems = []
    for position, label in enumerate(labels):
        faults.fail_call(len(faults.calls) + position)
        reply = scenario.act(api, context)
        faults.clear()
        with faults.suspended():
            current = tables.read()
            tables.restore(saved, current)
        if reply.status not in {scenario.status, 503} or (reply.status == 503 and reply.code != "StorageUnavailable"):
            problems.append(f"{label} failing: {reply.status} {reply.body}")
        elif reply.status == 503:
            changed = _differences(before, meaningful_state(current))
            if changed:
                problems.append(f"{label} failing: 503, yet changed {'; '.join(changed)}")
    assert not problems, f"calls made: {', '.join(labels)}\n" + "\n".join(problems)


# --- failures after a change has been decided: the answer must not deny the change ----------------


def _fail_nth(faults: DynamoDBFaults, operation: str, occurrence: int, code: str = THROTTLED) -> None:
    """From now on, the ``occurrence``-th call of ``operation`` fails on every attempt."""
    start = len(faults.calls)

    def decide(call: Call, attempt: int) -> str | None:
        if call.operation != operation:
            return None
        earlier = sum(1 for c in faults.calls[start : call.index] if c.operation == operation)
        return code if earlier + 1 == occurrence else None

    faults.fail_when(decide)


@pytest.mark.parametrize(
    "setup, body",
    [
        (_admin, {"enforced": True, "without_backup_credentials": True}),
        (lambda api: _enforcing_admin(api)["admin"], {"enforced": False}),
        (lambda api: _enforcing_admin(api)["admin"], {"enforced": True, "grace_period_hours": 24}),
        (
            lambda api: _enforcing_admin(api)["admin"],
            {"enforced": True, "grace_period_hours": 24, "enrollment": "pass_required"},
        ),
        (_admin, {"enrollment": "pass_required"}),
        (_admin, {"enforced": True, "without_backup_credentials": True, "enrollment": "pass_required"}),
    ],
    ids=["enforce", "relax", "grace period", "grace period and enrollment", "enrollment", "enforce and enrollment"],
)
def test_put_org_mfa_answers_from_the_organization_read_with_its_session_and_reads_nothing_after_its_write(
    api,
    faults,
    setup,
    body,
):
    """The answer is built from the item the session's read brought and what the write changed:
    no second read of the organization, and so no read after the change that could fail and
    answer 503 "nothing was changed" for a change made."""
    admin = setup(api)
    start = len(faults.calls)

    reply = api.call("PUT", "/org/mfa", token=admin.token, body=body)

    assert reply.status == 200, reply.body
    assert [call.operation for call in faults.calls_since(start)] == ["TransactGetItems", "TransactWriteItems"]
    # The acknowledgement belongs to the request; the answer shows the settings.
    settings = {name: value for name, value in body.items() if name != "without_backup_credentials"}
    assert {name: reply.body[name] for name in settings} == settings
    stored = Organization.get("acme", consistent_read=True)
    assert (bool(stored.mfa_enforced), stored.enrollment or "open", int(stored.grace_period_hours or 0)) == (
        reply.body["enforced"],
        reply.body["enrollment"],
        reply.body["grace_period_hours"],
    )


def test_a_503_from_renaming_a_key_means_the_name_did_not_change(api, faults):
    bob = _member_with_key(api)
    key_id = api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"][0]["id"]
    _fail_nth(faults, "TransactGetItems", 2)  # the key's read (with its claim), after the session's

    reply = api.call("PATCH", f"/me/mfa/keys/{key_id}", token=bob.token, body={"name": "Renamed"})
    faults.clear()

    assert reply.status == 503, reply.body
    assert SecurityKey.get("acme", key_id, consistent_read=True).name == "My key", (
        "503 'nothing was changed', yet renamed"
    )


def test_ending_a_members_sessions_is_never_done_without_its_audit_event(api, faults):
    admin = _admin(api)
    api.login(user="bob")
    api.login(user="bob")
    faults.always("TransactWriteItems")  # the sessions' deletion together with its audit event

    reply = api.call("DELETE", "/org/members/bob/sessions", token=admin.token)
    faults.clear()

    assert reply.status == 503, reply.body
    remaining = [s for s in org_sessions("acme") if s.user_id == "bob"]
    logged = _events("acme", "member.sessions_ended")
    assert remaining or logged, "bob's sessions were ended, the reply said nothing was changed, and no event records it"


def test_a_503_from_backup_login_records_no_successful_login(api, faults):
    credentials = _backup(api)
    _fail_nth(faults, "TransactWriteItems", 1)  # the session, its audit event and last_used_at

    reply = api.call(
        "POST", "/auth/backup-login", body={"key_id": credentials["key_id"], "secret": credentials["secret"]}
    )
    faults.clear()

    assert reply.status == 503, reply.body
    assert not _events("acme", "backup_login.succeeded"), (
        "503 'nothing was changed', yet the log records a backup login"
    )


# --- randomized fault schedules ------------------------------------------------------------------

SEEDS = range(12)


def _check_keys_consistent(orgs: tuple[str, ...]) -> dict[tuple[str, str], int]:
    """Every member's key count matches their keys; every key has its claim and every claim its key."""
    keys = list(SecurityKey.scan(consistent_read=True))
    claims = {claim.key_id: claim for claim in CredentialClaim.scan(consistent_read=True)}
    held = Counter((key.org_id, key.user_id) for key in keys)
    for org in orgs:
        for member in Member.query(org, consistent_read=True):
            assert member.key_count == held[(org, member.user_id)], (
                f"{org}/{member.user_id}: key_count {member.key_count}, keys {held[(org, member.user_id)]}"
            )
    for key in keys:
        claim = claims.get(key.key_id)
        assert claim is not None, f"key {key.key_id} has no credential claim"
        assert (claim.org_id, claim.user_id) == (key.org_id, key.user_id), (
            f"key {key.key_id}'s claim names another member"
        )
    assert set(claims) == {key.key_id for key in keys}, "a credential claim without its key"
    registered = Counter((e.org_id, e.user_id) for org in orgs for e in _events(org, "key.registered"))
    assert registered == held, "key.registered events do not match the keys stored"
    return dict(held)


@pytest.mark.parametrize("seed", SEEDS)
def test_registration_is_never_half_done_under_random_faults(api, faults, seed):
    rng = random.Random(seed)
    # acme: bob has no key, carol has one. strict enforces MFA, so dave must register first.
    bob = api.login(org="acme", user="bob")
    carol = _member_with_key(api, org="acme", user="carol")
    strict_admin = _admin(api, org="strict")
    assert (
        api.call(
            "PUT", "/org/mfa", token=strict_admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    dave = api.login(org="strict", user="dave")
    assert dave.state == "registration_required"
    held_before = {("acme", "carol"): 1, ("strict", "alice"): 1}

    faults.at_random(rng, down=rng.choice([0.1, 0.2, 0.35]), flaky=rng.choice([0.1, 0.3]))
    outcomes: list[tuple[Signed, SoftwareAuthenticator, int]] = []
    for _ in range(8):
        member = rng.choice([bob, carol, dave])
        options = api.registration_options(member)
        assert_refused_cleanly(options, expected={200}, what="registration options")
        if options.status != 200:
            continue
        authenticator = SoftwareAuthenticator()
        reply = api.call(
            "POST",
            "/me/mfa/keys",
            token=member.token,
            body={
                "challenge_id": options.body["challenge_id"],
                "name": "Key",
                "credential": authenticator.register(options.body["publicKey"]),
            },
        )
        assert_refused_cleanly(reply, expected={201}, what="registration")
        outcomes.append((member, authenticator, reply.status))
        if reply.status == 201:
            member.authenticators.append(authenticator)
            if member is dave:
                dave.state = reply.body["session"]["state"]
                assert dave.state == "active"
                # Registering his first key activated dave's session under a new token.
                dave.token = reply.body["token"] or dave.token
    # Another member presenting a registered credential is refused, faults or not.
    registered = [a for _, a, status in outcomes if status == 201]
    if registered:
        options = api.registration_options(bob)
        if options.status == 200:
            reply = api.call(
                "POST",
                "/me/mfa/keys",
                token=bob.token,
                body={
                    "challenge_id": options.body["challenge_id"],
                    "name": "Stolen",
                    "credential": registered[0].register({**options.body["publicKey"], "excludeCredentials": []}),
                },
            )
            assert_refused_cleanly(reply, expected={409}, what="registering another member's credential")
    faults.clear()

    expected = Counter(held_before)
    expected.update((m.org, m.user) for m, _, status in outcomes if status == 201)
    assert _check_keys_consistent(("acme", "strict")) == dict(expected)
    dave_session = Session.get(_session_id(dave.token), consistent_read=True)
    assert dave_session.state == ("active" if dave.authenticators else "registration_required")
    # A refused registration stored nothing: the same authenticator registers now.
    for member, authenticator, status in outcomes:
        if status == 503:
            options = api.registration_options(member)
            reply = api.call(
                "POST",
                "/me/mfa/keys",
                token=member.token,
                body={
                    "challenge_id": options.body["challenge_id"],
                    "name": "Again",
                    "credential": authenticator.register(options.body["publicKey"]),
                },
            )
            assert reply.status == 201, reply.body
    _check_keys_consistent(("acme", "strict"))


@pytest.mark.parametrize("seed", SEEDS)
def test_mfa_verify_reports_success_only_when_the_session_is_activated(api, faults, seed):
    rng = random.Random(1000 + seed)
    holder = _member_with_key(api)
    authenticator = holder.authenticators[0]
    key_id = api.call("GET", "/me/mfa/keys", token=holder.token).body["keys"][0]["id"]

    faults.at_random(rng, down=rng.choice([0.1, 0.2, 0.35]), flaky=rng.choice([0.1, 0.3]))
    for _ in range(8):
        login = api.login_reply(user="bob")
        assert_refused_cleanly(login, expected={200}, what="login")
        if login.status != 200:
            continue
        token = login.body["token"]
        options = api.call("POST", "/auth/mfa/options", token=token)
        assert_refused_cleanly(options, expected={200}, what="MFA options")
        if options.status != 200:
            continue
        with faults.suspended():
            count_before = key_in_use("acme", key_id).sign_count
        body = {
            "challenge_id": options.body["challenge_id"],
            "credential": authenticator.authenticate(options.body["publicKey"]),
        }
        reply = api.call("POST", "/auth/mfa/verify", token=token, body=body)
        assert_refused_cleanly(reply, expected={200}, what="MFA verify")

        with faults.suspended():
            if reply.status == 200:
                _assert_activated(
                    api, old=token, new=reply.body["token"], key_id=key_id, sign_count=authenticator.sign_count
                )
                continue
            _assert_untouched(api, token=token, key_id=key_id, sign_count=count_before)
            # The same request again, the fault gone: the challenge either was not used (and now
            # works) or was used up; either way the answer matches the session.
            again = api.call("POST", "/auth/mfa/verify", token=token, body=body)
            if again.status == 200:
                _assert_activated(
                    api, old=token, new=again.body["token"], key_id=key_id, sign_count=authenticator.sign_count
                )
            else:
                assert again.code == "ChallengeNotFound", again.body
                _assert_untouched(api, token=token, key_id=key_id, sign_count=count_before)
    faults.clear()


def _assert_activated(api: KeywardClient, *, old: str, new: str, key_id: str, sign_count: int) -> None:
    session = Session.get(_session_id(old), consistent_read=True)
    assert (session.state, session.token_hash, session.verified_key_id) == ("active", _token_hash(new), key_id)
    assert new != old
    assert api.call("GET", "/me", token=old).code == "InvalidToken"
    assert api.call("GET", "/me", token=new).body["session"]["state"] == "active"
    assert key_in_use("acme", key_id).sign_count == sign_count
    assert any(e.details["session_id"] == session.session_id for e in _events("acme", "mfa.succeeded"))


def _assert_untouched(api: KeywardClient, *, token: str, key_id: str, sign_count: int) -> None:
    session = Session.get(_session_id(token), consistent_read=True)
    assert (session.state, session.token_hash, session.verified_key_id) == ("mfa_required", _token_hash(token), None)
    assert api.call("GET", "/me", token=token).body["session"]["state"] == "mfa_required"
    assert key_in_use("acme", key_id).sign_count == sign_count
    assert not any(e.details["session_id"] == session.session_id for e in _events("acme", "mfa.succeeded"))


def _enforcement_state(org: str, action: str) -> tuple[bool, int, int]:
    found = Organization.get(org, consistent_read=True)
    return bool(found.mfa_enforced), found.enforcement_generation, len(_events(org, action))


@pytest.mark.parametrize("seed", SEEDS)
def test_enforcement_takes_effect_entirely_or_not_at_all(api, faults, seed):
    rng = random.Random(2000 + seed)
    admin = _admin(api)
    bob = api.login(user="bob")
    carol = _member_with_key(api, user="carol")

    faults.at_random(rng, down=rng.choice([0.2, 0.35, 0.5]), flaky=rng.choice([0.1, 0.3]))
    reply = api.call("PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True})
    faults.clear()
    assert_refused_cleanly(reply, expected={200}, what="enforce")
    enforced, generation, logged = _enforcement_state("acme", "enforcement.enabled")
    assert (enforced, generation, logged) in {(True, 1, 1), (False, 0, 0)}, "half an enforcement"
    if reply.status == 200:
        assert enforced
    for other in (bob, carol):
        answer = api.call("GET", "/me", token=other.token)
        assert answer.status == (401 if enforced else 200), answer.body
    assert api.call("GET", "/me", token=admin.token).status == 200

    # Trying again without faults finishes it, once.
    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    assert _enforcement_state("acme", "enforcement.enabled") == (True, 1, 1)

    faults.at_random(rng, down=rng.choice([0.2, 0.35, 0.5]), flaky=0.1)
    reply = api.call("PUT", "/org/mfa", token=admin.token, body={"enforced": False})
    faults.clear()
    assert_refused_cleanly(reply, expected={200}, what="relax")
    relaxed = _enforcement_state("acme", "enforcement.disabled")
    assert relaxed in {(False, 1, 1), (True, 1, 0)}, "half a relaxation"


def test_a_transient_throttle_is_absorbed_by_the_retries(api, faults):
    faults.first_attempts()
    holder = _member_with_key(api)
    reply = api.call("GET", "/me", token=holder.token)
    faults.clear()

    assert reply.status == 200, reply.body
    assert faults.injected[THROTTLED] and faults.injected[INTERNAL]


def test_during_an_outage_every_call_answers_503(api, faults):
    admin = _admin(api)
    bob = _member_with_key(api)
    faults.always()

    calls = [
        api.login_reply(user="bob"),
        api.call("GET", "/me", token=bob.token),
        api.call("POST", "/me/mfa/keys/options", token=bob.token),
        api.call("GET", "/me/mfa/keys", token=bob.token),
        api.call("DELETE", "/me/mfa", token=bob.token),
        api.call("PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}),
        api.call("GET", "/org/audit", token=admin.token),
        api.call("POST", "/auth/backup-login", body={"key_id": "bk_" + "a" * 22, "secret": "x"}),
        api.call("POST", "/auth/logout", token=bob.token),
    ]
    faults.clear()

    assert [(reply.status, reply.code) for reply in calls] == [(503, "StorageUnavailable")] * len(calls)
    assert api.call("GET", "/me", token=bob.token).status == 200


# --- the stream function -----------------------------------------------------------------------

OLD_SESSIONS = 120


def _old_sessions(org: str, count: int) -> None:
    started = clock.now()
    with Session.batch_write() as batch:
        for i in range(count):
            batch.save(
                Session.of_member(
                    f"old{i:019d}",
                    org_id=org,
                    token_hash="x",
                    state="active",
                    user_id=f"u{i}",
                    created_at=started,
                    expires_at=started + timedelta(hours=1),
                    ttl=started + timedelta(days=1),
                )
            )


def _remaining_old(org: str) -> int:
    return sum(1 for s in org_sessions(org) if s.session_id.startswith("old"))


class _Capture:
    """The stream function, keeping what it was given and what it answered."""

    def __init__(self, faults: DynamoDBFaults, *, clear_after_failures: int | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        # The batches the function reported failures in: what Lambda would deliver again.
        self.failed_events: list[dict[str, Any]] = []
        self.failures = 0
        self._faults = faults
        self._clear_after = clear_after_failures

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        answer = end_sessions_on_enforcement(event, context)
        if answer["batchItemFailures"]:
            self.failures += 1
            self.failed_events.append(event)
            if self._clear_after is not None and self.failures >= self._clear_after:
                self._faults.clear()  # the outage ends before Lambda's next retry
        return answer


@dataclass
class _Enforced:
    admin: Signed
    pump: StreamPump
    ended: int  # the sessions the enforcement ends: all but the admin's current one


def _enforced_org(api: KeywardClient, handler: _Capture) -> _Enforced:
    admin = _admin(api)
    _old_sessions("acme", OLD_SESSIONS)
    ended = sum(1 for _ in org_sessions("acme")) - 1
    pump = StreamPump(handler=handler, table_name=settings().tables.orgs, endpoint=settings().dynamodb_endpoint)
    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    return _Enforced(admin=admin, pump=pump, ended=ended)


def _assert_invalidation_done(enforced: _Enforced) -> None:
    invalidation = Organization.get("acme", consistent_read=True).invalidation
    assert [s.session_id for s in org_sessions("acme")] == [_session_id(enforced.admin.token)]
    assert (invalidation.state, invalidation.sessions_ended) == ("done", enforced.ended)
    [event] = _events("acme", "enforcement.sessions_ended")
    assert event.details["sessions_ended"] == enforced.ended


@pytest.mark.parametrize("operation", ["BatchWriteItem", "Query"])
def test_the_stream_function_reports_the_record_and_finishes_once_the_fault_clears(api, faults, operation):
    handler = _Capture(faults, clear_after_failures=2)
    enforced = _enforced_org(api, handler)
    faults.always(operation, code=THROTTLED if operation == "Query" else INTERNAL)

    enforced.pump.drain()  # fails twice (each reported in batchItemFailures), then Lambda's retry finds DynamoDB back

    assert handler.failures == 2
    _assert_invalidation_done(enforced)
    assert enforced.pump.drain() == 0


def test_the_stream_function_finishes_when_the_record_is_delivered_again_after_an_outage(api, faults):
    handler = _Capture(faults)
    enforced = _enforced_org(api, handler)
    faults.always("BatchWriteItem")

    enforced.pump.drain()  # every delivery attempt fails; the pump gives up as Lambda would at its retry limit
    with faults.suspended():
        invalidation = Organization.get("acme", consistent_read=True).invalidation
        assert (invalidation.state, _remaining_old("acme")) == ("running", OLD_SESSIONS)
        assert api.call("GET", "/me", token=enforced.admin.token).status == 200
    faults.clear()

    assert handler.failures == MAX_DELIVERY_ATTEMPTS
    assert end_sessions_on_enforcement(handler.failed_events[-1], _Plenty()) == {"batchItemFailures": []}
    _assert_invalidation_done(enforced)


def test_the_sessions_ended_count_is_right_when_the_fault_starts_midway(api, faults, monkeypatch):
    monkeypatch.setattr(invalidation, "PARALLEL_BATCHES", 1)  # batches in order: the first two get through
    handler = _Capture(faults)
    enforced = _enforced_org(api, handler)
    start = len(faults.calls)
    faults.fail_when(
        lambda call, attempt: (
            INTERNAL
            if call.operation == "BatchWriteItem"
            and sum(1 for c in faults.calls[start : call.index + 1] if c.operation == "BatchWriteItem") > 2
            else None
        )
    )

    enforced.pump.drain()
    faults.clear()
    assert 0 < _remaining_old("acme") < OLD_SESSIONS
    assert end_sessions_on_enforcement(handler.failed_events[-1], _Plenty()) == {"batchItemFailures": []}

    _assert_invalidation_done(enforced)


class _Plenty:
    def get_remaining_time_in_millis(self) -> int:
        return 900_000
