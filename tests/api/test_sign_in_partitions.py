"""Nothing else an organization's logins all write: every DynamoDB write of a login, an MFA verify
and a step-up, recorded with the partitions it lands on (the capacity bench's recorder,
bench/writes.py, indexes included), lands on a partition of that session, member, security key or
challenge, or on a key that is explicitly sharded; and none of them writes the organization item.

A partition key that every sign-in of an organization writes caps how fast the organization can
sign in (DynamoDB: 1,000 write units a second per partition key); docs/performance.md's capacity
model has the figures.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from bench.writes import Charge, ItemWrite, KeySchema, MotoItems, WriteRecorder, charges, drop_keyward_connections
from bench.writes import key_schema as key_schema_of
from chalicelib.base.config import settings
from chalicelib.base.models import Organization
from chalicelib.ceremony import ceremonies
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Member

ORG = "acme"

# Keys that sign-ins of an organization share, spread over shards, by table (or "table index"
# for a global index's partitions): the login rate's counters (chalicelib/access/login_rate.py)
# the audit log's day shards (chalicelib/base/audit_shards.py) and the sessions' organization
# shards (the by-org-shard index, chalicelib/base/models.py).
SHARDED = {
    "throttles": re.compile(rf"logins#{ORG}#\d+#\d+"),
    "audit": re.compile(rf"{ORG}#\d{{4}}-\d\d-\d\d#\d+"),
    "sessions by-org-shard": re.compile(rf"{ORG}#\d+"),
}


@dataclasses.dataclass
class Recorded:
    """The writes of one request and the IDs it is entitled to write under."""

    operation: str
    writes: list[ItemWrite]
    charges: list[Charge]
    own: set[str]  # the session's, the member's, the key's and the challenge's IDs


class Recorder:
    """Records each request's writes and the partitions they land on (key schemas from DescribeTable)."""

    def __init__(self, recorder: WriteRecorder) -> None:
        self._recorder = recorder
        self._dynamodb = boto3.client(
            "dynamodb", endpoint_url=Organization.Meta.host, region_name=Organization.Meta.region
        )
        self._schemas: dict[str, KeySchema] = {}
        self.requests: list[Recorded] = []

    def _schema(self, table: str) -> KeySchema:
        if table not in self._schemas:
            self._schemas[table] = key_schema_of(self._dynamodb.describe_table(TableName=table)["Table"])
        return self._schemas[table]

    def __call__(self, operation: str, own: set[str], call: Callable[[], Any]) -> Any:
        with self._recorder.recording() as writes:
            answer = call()
        found = [charge for write in writes for charge in charges(write, self._schema(write.table))]
        # The sessions the request wrote are its own, whatever their token looks like.
        sessions = {
            write.after["session_id"]["S"]
            for write in writes
            if _table(write.table) == "sessions" and write.after and "session_id" in write.after
        }
        self.requests.append(Recorded(operation, list(writes), found, set(own) | sessions))
        return answer


@pytest.fixture
def record() -> Any:
    recorder = WriteRecorder(MotoItems())
    with recorder.installed(fresh_connections=drop_keyward_connections):
        yield Recorder(recorder)


def _table(name: str) -> str:
    return {deployed: short for short, deployed in dataclasses.asdict(settings().tables).items()}.get(name, name)


def _session_id(token: str) -> str:
    return token.split(".")[3]


@pytest.fixture
def bobs_key(api: KeywardClient) -> SoftwareAuthenticator:
    """bob's security key: bob is a member of acme (whose admin is alice) and holds one."""
    api.login(user="alice", admin=True)
    bob = api.login(user="bob")
    key = SoftwareAuthenticator()
    assert api.add_key(bob, key).status == 201
    return key


def _sign_in_with_mfa_and_step_up(api: KeywardClient, record: Recorder, key: SoftwareAuthenticator) -> None:
    """bob logs in, passes MFA and steps up: each request recorded."""
    member_and_key = {"bob", ceremonies.key_id_for(key.credential_id)}

    login = record("login", member_and_key, lambda: api.login_reply(user="bob"))
    assert login.status == 200, login.body
    session = Member(org=ORG, user="bob", token=login.body["token"], state=login.body["state"])
    own = member_and_key | {_session_id(session.token)}

    options = api.mfa_options(session)
    assert options.status == 200, options.body
    challenge = options.body["challenge_id"]
    verified = record(
        "MFA verify",
        own | {challenge},
        lambda: api.mfa_verify(session, challenge, key.authenticate(options.body["publicKey"])),
    )
    assert verified.status == 200, verified.body
    token = verified.body["token"]
    own |= {_session_id(token)}

    options = api.call("POST", "/auth/reauth/options", token=token)
    assert options.status == 200, options.body
    challenge = options.body["challenge_id"]
    body = {"challenge_id": challenge, "credential": key.authenticate(options.body["publicKey"])}
    stepped_up = record(
        "step-up", own | {challenge}, lambda: api.call("POST", "/auth/reauth/verify", token=token, body=body)
    )
    assert stepped_up.status == 200, stepped_up.body


def _whose(charge: Charge, own: set[str]) -> str | None:
    """Why ``charge``'s partition is not the organization's: the ID of its own it is under, or
    the sharding it follows; None when it is neither."""
    if any(identifier in charge.partition_key.split("#") for identifier in own):
        return "own"
    where, partition_key = _partition(charge)
    sharded = SHARDED.get(where)
    if sharded is not None and sharded.fullmatch(partition_key):
        return "sharded"
    return None


def _partition(charge: Charge) -> tuple[str, str]:
    table = _table(charge.table)
    return (f"{table} {charge.index}" if charge.global_index else table), charge.partition_key


def test_a_login_an_mfa_verify_and_a_step_up_write_nothing_an_organizations_logins_all_write(
    api: KeywardClient, record: Recorder, bobs_key: SoftwareAuthenticator
):
    organization = Organization.get(ORG, consistent_read=True).serialize()
    _sign_in_with_mfa_and_step_up(api, record, bobs_key)

    assert [request.operation for request in record.requests] == ["login", "MFA verify", "step-up"]
    for request in record.requests:
        assert request.writes, f"{request.operation} wrote nothing: the recorder saw no request"
        assert not [write for write in request.writes if _table(write.table) == "orgs"], (
            f"{request.operation} wrote the organization item"
        )
        organization_wide = {_partition(charge) for charge in request.charges if _whose(charge, request.own) is None}
        assert not organization_wide, f"{request.operation} wrote partitions shared by the organization's sign-ins"
    assert Organization.get(ORG, consistent_read=True).serialize() == organization
