"""An HTTP client for the running local stack (``python -m devstack run``) and a look behind the
API's back at the stack's own DynamoDB, for attack and race tests that drive keyward over real
HTTP.

The client mints ID tokens with the dev IdP whose key the stack trusts (``.devstack/idp-key.pem``)
and runs the WebAuthn ceremonies with :class:`tests.support.authenticator.SoftwareAuthenticator`. It is
safe to use from many threads at once: each thread keeps its own keep-alive connection.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import boto3
import requests

from devstack.idp import DevIdentityProvider
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.local_stack import LocalStack

REQUEST_TIMEOUT_SECONDS = 30.0
BARRIER_TIMEOUT_SECONDS = 30.0
CONNECT_ATTEMPTS = 5
# How PynamoDB's UTCDateTimeAttribute stores a time.
PYNAMODB_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+0000"
TABLE_PREFIX = "keyward-"


def unique_org(prefix: str = "org") -> str:
    """An organization ID no other test uses, so tests sharing one stack never see each other."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def session_id_of(token: str) -> str:
    # kw1.<org>.<user>.<session id>.<secret>
    return token.split(".")[3]


@dataclass
class Reply:
    status: int
    body: Any
    # Looked up regardless of case, as HTTP names them.
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str | None:
        return self.body.get("Code") if isinstance(self.body, dict) else None

    def __str__(self) -> str:
        return f"{self.status} {json.dumps(self.body)[:400]}"


@dataclass
class Pending:
    """A login that must pass the MFA check: its token and one challenge for it."""

    token: str
    challenge_id: str
    public_key: dict[str, Any]


class StackClient:
    """keyward's HTTP contract over real HTTP."""

    def __init__(self, *, stack: LocalStack, idp: DevIdentityProvider) -> None:
        self.api = stack.api
        self.origin = stack.api  # the local stage's WebAuthn origin is the API's own
        self.idp = idp
        self._local = threading.local()

    def _http(self) -> requests.Session:
        http = getattr(self._local, "http", None)
        if http is None:
            http = requests.Session()
            http.trust_env = False  # no proxy from the environment between us and localhost
            self._local.http = http
        return http

    def call(
        self, method: str, path: str, *, token: str | None = None, body: Any = None, raw: bytes | None = None
    ) -> Reply:
        """One request; ``body`` is sent as JSON, ``raw`` as the exact bytes given."""
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        url = f"{self.api}{path}"
        if getattr(self._local, "keep_alive", False):
            response = self._http().request(method, url, headers=headers, data=data, timeout=REQUEST_TIMEOUT_SECONDS)
        else:
            # A connection of its own, closed after the request: chalice local writes a response
            # in several small segments, and on a kept-alive connection Nagle's algorithm meets
            # the client's delayed ACK for ~40 ms a request. Only racing threads keep theirs
            # (see in_parallel).
            with requests.Session() as http:
                http.trust_env = False
                response = http.request(
                    method, url, headers={**headers, "connection": "close"}, data=data, timeout=REQUEST_TIMEOUT_SECONDS
                )
        try:
            parsed = response.json() if response.content else None
        except ValueError:
            parsed = response.text
        return Reply(status=response.status_code, body=parsed, headers=response.headers)

    # --- the flows --------------------------------------------------------------------------

    def login(self, *, org: str, user: str, admin: bool = False) -> Reply:
        id_token = self.idp.mint(org=org, user=user, admin=admin, name=user.title(), email=f"{user}@{org}.example")
        reply = self.call("POST", "/auth/login", body={"id_token": id_token})
        assert reply.status == 200, f"login of {user}@{org}: {reply}"
        return reply

    def token(self, *, org: str, user: str, admin: bool = False, state: str = "active") -> str:
        """A fresh login's token, in the state the test expects it to be in."""
        login = self.login(org=org, user=user, admin=admin)
        assert login.body["state"] == state, f"login of {user}@{org}: {login}"
        return login.body["token"]

    def registration_options(self, token: str) -> Reply:
        options = self.call("POST", "/me/mfa/keys/options", token=token)
        assert options.status == 200, f"registration options: {options}"
        return options

    def register(self, token: str, challenge_id: str, credential: Any, *, name: str = "Key") -> Reply:
        return self.call(
            "POST",
            "/me/mfa/keys",
            token=token,
            body={"challenge_id": challenge_id, "name": name, "credential": credential},
        )

    def add_key(self, token: str, authenticator: SoftwareAuthenticator | None = None, *, name: str = "Key") -> Reply:
        """The whole registration ceremony; returns the 201 reply (its body has the key)."""
        authenticator = authenticator or SoftwareAuthenticator()
        options = self.registration_options(token)
        credential = authenticator.register(options.body["publicKey"], origin=self.origin)
        reply = self.register(token, options.body["challenge_id"], credential, name=name)
        assert reply.status == 201, f"key registration: {reply}"
        return reply

    def member_with_key(
        self, *, org: str, user: str, admin: bool = False, authenticator: SoftwareAuthenticator | None = None
    ) -> tuple[str, SoftwareAuthenticator, str]:
        """A member who registered a key in their first (active) session: that session's token,
        the authenticator and the key's ID."""
        authenticator = authenticator or SoftwareAuthenticator()
        token = self.token(org=org, user=user, admin=admin)
        key_id = self.add_key(token, authenticator, name=f"{user}'s key").body["key"]["id"]
        return token, authenticator, key_id

    def mfa_options(self, token: str) -> Reply:
        options = self.call("POST", "/auth/mfa/options", token=token)
        assert options.status == 200, f"MFA options: {options}"
        return options

    def pending(self, *, org: str, user: str, admin: bool = False) -> Pending:
        """A new login of a key holder (``mfa_required``) with one MFA challenge for it."""
        token = self.token(org=org, user=user, admin=admin, state="mfa_required")
        options = self.mfa_options(token)
        return Pending(token=token, challenge_id=options.body["challenge_id"], public_key=options.body["publicKey"])

    def mfa_verify(self, token: str, challenge_id: str, credential: Any) -> Reply:
        return self.call(
            "POST", "/auth/mfa/verify", token=token, body={"challenge_id": challenge_id, "credential": credential}
        )

    def mfa_login(self, *, org: str, user: str, authenticator: SoftwareAuthenticator, admin: bool = False) -> str:
        """Log in and pass the MFA step; returns the new, active token."""
        pending = self.pending(org=org, user=user, admin=admin)
        credential = authenticator.authenticate(pending.public_key, origin=self.origin)
        verified = self.mfa_verify(pending.token, pending.challenge_id, credential)
        assert verified.status == 200, f"MFA verify: {verified}"
        assert verified.body["state"] == "active", f"MFA verify: {verified}"
        assert verified.body["token"] != pending.token, "MFA verify must return a new token"
        return verified.body["token"]

    def enforce(self, admin_token: str) -> Reply:
        """Enforce MFA, knowingly, in an organization that holds no backup credentials."""
        reply = self.call(
            "PUT", "/org/mfa", token=admin_token, body={"enforced": True, "without_backup_credentials": True}
        )
        assert reply.status == 200, f"PUT /org/mfa: {reply}"
        assert reply.body["enforced"] is True, f"PUT /org/mfa: {reply}"
        return reply

    def enforced_org(self, org: str, *, admin: str = "admin") -> str:
        """An organization whose admin registered a key and enforced MFA, once the stream function
        has finished ending the older sessions (so that it writes nothing while a test looks on);
        the admin's active token."""
        token = self.token(org=org, user=admin, admin=True)
        self.add_key(token, name="Admin key")
        self.enforce(token)
        deadline = time.monotonic() + 30
        while (self.call("GET", "/org/mfa", token=token).body.get("invalidation") or {}).get("state") != "done":
            assert time.monotonic() < deadline, f"the enforcement of {org} was not cleaned up within 30 s"
            time.sleep(0.1)
        return token

    def step_up(self, token: str, authenticator: SoftwareAuthenticator) -> Reply:
        """The step-up ceremony with one of the member's keys; returns the verify's reply."""
        options = self.call("POST", "/auth/reauth/options", token=token)
        assert options.status == 200, f"step-up options: {options}"
        credential = authenticator.authenticate(options.body["publicKey"], origin=self.origin)
        return self.call(
            "POST",
            "/auth/reauth/verify",
            token=token,
            body={"challenge_id": options.body["challenge_id"], "credential": credential},
        )

    def race_to_delete_every_key(self, token: str, keys: dict[str, SoftwareAuthenticator], *, label: str) -> str:
        """Delete all of a member's ``keys`` (key ID → authenticator) at once under enforcement,
        from a session that proved one of them, and check that the last one survives: every
        delete succeeds or is refused as the rule says, and exactly one key is left, counted once.
        A delete that reads the session after the key it proved is gone is refused with
        ``ReauthenticationRequired`` (its proof lapsed); if none is, exactly one is refused with
        ``LastKeyRequired``. Returns the surviving key's ID, which the session then steps up with.
        """
        held = sorted(keys)
        replies = self.in_parallel(
            [lambda key_id=key_id: self.call("DELETE", f"/me/mfa/keys/{key_id}", token=token) for key_id in held]
        )
        outcome = [f"{key_id}: {reply}" for key_id, reply in zip(held, replies, strict=True)]
        refusals = [(reply.status, reply.code) for reply in replies if reply.status != 204]
        assert set(refusals) <= {(409, "LastKeyRequired"), (403, "ReauthenticationRequired")}, f"{label}: {outcome}"
        remaining = self.key_ids(token)
        deleted = [key_id for key_id, reply in zip(held, replies, strict=True) if reply.status == 204]
        assert sorted(deleted + remaining) == held and remaining, f"{label}: {outcome}, left {remaining}"
        assert self.key_count(token) == len(remaining), f"{label}: {outcome}"
        if (403, "ReauthenticationRequired") not in refusals:
            assert refusals == [(409, "LastKeyRequired")] and len(remaining) == 1, f"{label}: {outcome}"
        for key_id in remaining[1:]:  # only where a lapsed proof stopped some deletes
            assert self.step_up(token, keys[remaining[0]]).status == 200
            assert self.call("DELETE", f"/me/mfa/keys/{key_id}", token=token).status == 204
        [survivor] = self.key_ids(token)
        assert self.step_up(token, keys[survivor]).status == 200, f"{label}: step-up with the survivor"
        return survivor

    def me(self, token: str) -> Reply:
        reply = self.call("GET", "/me", token=token)
        assert reply.status == 200, f"GET /me: {reply}"
        return reply

    def key_ids(self, token: str) -> list[str]:
        reply = self.call("GET", "/me/mfa/keys", token=token)
        assert reply.status == 200, f"GET /me/mfa/keys: {reply}"
        return [key["id"] for key in reply.body["keys"]]

    def key_count(self, token: str) -> int:
        return self.me(token).body["mfa"]["key_count"]

    # --- parallel requests ------------------------------------------------------------------

    def in_parallel(self, calls: Sequence[Callable[[], Any]], *, first: Callable[[], None] | None = None) -> list[Any]:
        """Run the calls on threads of their own, released together by a barrier; their results in order.

        Each thread first opens its keep-alive connection: chalice local listens with a backlog
        of 5, and a burst of new connections beyond it is reset by the kernel, not served.
        ``first`` runs once every thread is connected, just before they are released.
        """
        barrier = threading.Barrier(len(calls), action=first)

        def released(call: Callable[[], Any]) -> Any:
            self._local.keep_alive = True
            try:
                self._connect()
                barrier.wait(timeout=BARRIER_TIMEOUT_SECONDS)
                return call()
            finally:
                self._local.keep_alive = False

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [pool.submit(released, call) for call in calls]
            return [future.result(timeout=BARRIER_TIMEOUT_SECONDS + 2 * REQUEST_TIMEOUT_SECONDS) for future in futures]

    def _connect(self) -> None:
        # An anonymous GET /me is refused without touching DynamoDB, and is safe to repeat.
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                self._http().get(
                    f"{self.api}/me", headers={"connection": "keep-alive"}, timeout=REQUEST_TIMEOUT_SECONDS
                )
                return
            except requests.ConnectionError:
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))


class StackTables:
    """The stack's DynamoDB (moto), read and nudged directly with boto3."""

    # Attributes that change with mere use, not with anything a refused request could do.
    _VOLATILE: ClassVar[dict[str, set[str]]] = {"sessions": {"last_seen_at"}}

    def __init__(self, stack: LocalStack) -> None:
        self.client = boto3.client(
            "dynamodb",
            endpoint_url=stack.dynamodb,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    @staticmethod
    def table(name: str) -> str:
        return TABLE_PREFIX + name

    def get(self, table: str, **key: str) -> dict[str, Any] | None:
        found = self.client.get_item(
            TableName=self.table(table), Key={k: {"S": v} for k, v in key.items()}, ConsistentRead=True
        )
        return found.get("Item")

    def query_org(self, table: str, org_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self.client.get_paginator("query").paginate(
            TableName=self.table(table),
            KeyConditionExpression="org_id = :org",
            ExpressionAttributeValues={":org": {"S": org_id}},
            ConsistentRead=True,
        ):
            items.extend(page["Items"])
        return items

    def scan_org(self, table: str, org_id: str) -> list[dict[str, Any]]:
        """Items of a table keyed by something else than the organization, that name it."""
        items: list[dict[str, Any]] = []
        for page in self.client.get_paginator("scan").paginate(
            TableName=self.table(table),
            FilterExpression="org_id = :org",
            ExpressionAttributeValues={":org": {"S": org_id}},
            ConsistentRead=True,
        ):
            items.extend(page["Items"])
        return items

    def snapshot(self, *org_ids: str) -> dict[str, Any]:
        """Everything a refused request must leave as it was: the organizations, their members,
        keys, credential claims, sessions (but for ``last_seen_at``) and backup credentials.

        Challenges (a failed ceremony uses its challenge up) and the audit log (refusals are
        logged) are left out; tests look at those on their own.
        """
        state: dict[str, Any] = {}
        for org_id in org_ids:
            state[org_id] = {
                "org": self.get("orgs", org_id=org_id),
                **{
                    table: self._by_key(table, self.query_org(table, org_id), key)
                    for table, key in (("members", "user_id"), ("keys", "key_id"))
                },
                # Sessions are keyed by their own ID: those naming the organization.
                "sessions": self._by_key("sessions", self.scan_org("sessions-v2", org_id), "session_id"),
                **{
                    table: self._by_key(table, self.scan_org(table, org_id), "key_id")
                    for table in ("credentials", "backup-credentials")
                },
            }
        return state

    def _by_key(self, table: str, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
        volatile = self._VOLATILE.get(table, set())
        return {item[key]["S"]: {k: v for k, v in item.items() if k not in volatile} for item in items}

    def key(self, org_id: str, key_id: str) -> dict[str, Any] | None:
        return self.get("keys", org_id=org_id, key_id=key_id)

    def sign_count(self, org_id: str, key_id: str) -> int:
        """The key's signature counter: on its credential claim once a check wrote it there."""
        item = self.key(org_id, key_id)
        assert item is not None, f"key {key_id} of {org_id} is not stored"
        claim = self.get("credentials", key_id=key_id)
        if claim is not None and "sign_count" in claim:
            return int(claim["sign_count"]["N"])
        return int(item["sign_count"]["N"])

    def last_used(self, org_id: str, key_id: str) -> str | None:
        """When the key last passed a check, as stored (its claim, or the key as registered)."""
        item = self.key(org_id, key_id)
        assert item is not None, f"key {key_id} of {org_id} is not stored"
        claim = self.get("credentials", key_id=key_id) or {}
        used = claim.get("last_used_at") or item.get("last_used_at")
        return used["S"] if used else None

    def challenge(self, challenge_id: str) -> dict[str, Any] | None:
        return self.get("challenges", challenge_id=challenge_id)

    def expire_challenge(self, challenge_id: str, *, at: datetime) -> None:
        self.client.update_item(
            TableName=self.table("challenges"),
            Key={"challenge_id": {"S": challenge_id}},
            UpdateExpression="SET expires_at = :at",
            ConditionExpression="attribute_exists(challenge_id)",
            ExpressionAttributeValues={":at": {"S": at.strftime(PYNAMODB_TIME_FORMAT)}},
        )

    def audit(self, org_id: str) -> list[dict[str, Any]]:
        """The organization's audit events, oldest first, as plain dicts."""
        items = sorted(self.scan_org("audit-log", org_id), key=lambda item: item["event_key"]["S"])
        return [
            {
                "action": item["action"]["S"],
                "target": item.get("target", {}).get("S"),
                "user_id": item.get("user_id", {}).get("S"),
                "details": {k: next(iter(v.values())) for k, v in item.get("details", {}).get("M", {}).items()},
                "event_key": item["event_key"]["S"],
            }
            for item in items
        ]


def new_client(local_stack: LocalStack) -> StackClient:
    # The stack signs nothing itself: it trusts the dev IdP whose key is kept in .devstack/.
    return StackClient(stack=local_stack, idp=DevIdentityProvider.load_or_create())
