"""``GET /org/mfa`` on organizations of 10,000 and 100,000 members: before (counting every
member with a Query, as the endpoint once did) and after (the coverage counters on the
organization item).

For each size N, on the local stack (moto in this process, see :mod:`bench.stack`): an
organization gets N members, three in four holding a key, written straight into moto's backend
(as :mod:`bench.invalidation` writes sessions; through HTTP, moto takes about 1 ms an item),
with its counters set as keyward's transactions keep them. Then:

- before: the organization item, then a strongly consistent Query over every member
  (``key_count`` projected), page by page, as the endpoint read them;
- after: the whole request through the API (``chalice.test.Client``): the session's one
  transactional read, then the organization item. Its admin signs in first (not measured).

Round trips are counted on the wire (botocore's before-send event), with the requests' bodies.
Read units: moto answers ``ReturnConsumedCapacity`` with a fixed figure whatever a request read
(one unit a Query), so they are computed as DynamoDB charges them, from the full size of each
item a request read (attribute names plus values): a strongly consistent GetItem rounds its
item up to 4 KB, a transactional read charges two units per 4 KB of each item, and a Query sums
the full size of the items each page reads (a projection does not lower it) and rounds each
page up to 4 KB. moto pages a Query by the size it returns, DynamoDB by the size it reads (1 MB
a page): the DynamoDB round trips and units of the Query are computed on DynamoDB's pages.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.stack import LocalStack, local_stack
from bench.writes import item_bytes

SIZES = (10_000, 100_000)
_UNIT_BYTES = 4096
_PAGE_BYTES = 1024 * 1024  # a Query page reads at most 1 MB


@dataclass(frozen=True)
class CoverageRun:
    how: str
    calls: Counter[str]  # on the wire (moto)
    dynamodb_round_trips: int  # what DynamoDB itself would need
    read_units: float
    seconds: float
    members_total: int
    members_compliant: int

    @property
    def round_trips(self) -> int:
        return sum(self.calls.values())


@dataclass(frozen=True)
class CoverageFigures:
    members: int
    load_seconds: float
    member_bytes: int  # the full size of all the organization's members
    before: CoverageRun
    after: CoverageRun


def measure_coverage(sizes: Sequence[int] = SIZES) -> list[CoverageFigures]:
    from bench.stack import MOTO_READ_TIMEOUT_SECONDS

    stack = local_stack()
    from chalicelib.base.models import Member

    # moto sorts the whole partition for every Query page (see bench/stack.py): allow for it, in
    # a new connection for the members table.
    Member.Meta.read_timeout_seconds = MOTO_READ_TIMEOUT_SECONDS
    Member._connection = None
    figures = []
    # Smallest first: moto's Query looks at every member of the table, of every organization.
    for n in sorted(sizes):
        org_id = f"bench-coverage-{n}"
        started = time.perf_counter()
        sizes_by_user = _populate(stack, org_id, n)
        load_seconds = time.perf_counter() - started
        _progress(f"N={n:,}: members written in {load_seconds:.1f} s")
        before = _before(stack, org_id, sizes_by_user)
        _progress(f"N={n:,}: before: {before.round_trips} round trips in {before.seconds:.2f} s")
        after = _after(stack, org_id)
        _progress(f"N={n:,}: after: {after.round_trips} round trips in {after.seconds:.3f} s")
        for run in (before, after):
            if (run.members_total, run.members_compliant) != _expected(n, admins=run is after):
                raise RuntimeError(
                    f"N={n}: {run.how} counted {run.members_total} members, {run.members_compliant} with a key"
                )
        figures.append(
            CoverageFigures(
                members=n,
                load_seconds=load_seconds,
                member_bytes=sum(sizes_by_user.values()),
                before=before,
                after=after,
            )
        )
    return figures


def _progress(message: str) -> None:
    print(f"  [coverage] {message}", file=sys.stderr, flush=True)


def _holds_key(n: int) -> bool:
    return n % 4 != 0  # three in four members hold a key


def _expected(n: int, *, admins: bool) -> tuple[int, int]:
    """What the count must say: the members written, and the admin who signed in (without a key)."""
    return n + int(admins), sum(_holds_key(i) for i in range(n))


# --- setup --------------------------------------------------------------------------------------


def _populate(stack: LocalStack, org_id: str, n: int) -> dict[str, int]:
    """Write the organization and ``n`` members shaped as keyward writes them; each member's
    full size (DynamoDB's rule) by user ID.

    Straight into moto's backend, which runs in this process, as moto's own items: moto's
    ``put_item`` validates every attribute again, which costs more than the item itself. A
    GetItem through the endpoint then checks that the server sees them.
    """
    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    from chalicelib.base import clock
    from chalicelib.base.config import settings
    from chalicelib.base.models import Member, Organization
    from chalicelib.counters import coverage
    from chalicelib.counters.coverage import Bucket

    now = clock.now()
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][settings().region].get_table(Member.Meta.table_name)
    partition = table.items[DynamoType({"S": org_id})]
    sizes: dict[str, int] = {}
    with_key = 0
    # Two members serialized by the model, one with a key and one without; every member is one
    # of them with its own ID, name, email and credential.
    shapes = {
        holds: Member(
            org_id,
            "-",
            name="-",
            email="-",
            key_count=int(holds),
            created_at=now,
            last_login_at=now,
            coverage=coverage.coverage_key(org_id=org_id, bucket=Bucket.ONE if holds else Bucket.NONE),
            # What a key's registration keeps on its member: the credential ID and transports.
            credentials={"-": {"id": "-", "transports": ["usb", "nfc"]}} if holds else None,
        ).serialize()
        for holds in (False, True)
    }
    hash_value = DynamoType({"S": org_id})
    for i in range(n):
        holds = _holds_key(i)
        with_key += holds
        member = dict(shapes[holds])
        user_id = f"member-{i:06d}"
        member["user_id"] = {"S": user_id}
        member["name"] = {"S": f"Member {i}"}
        member["email"] = {"S": f"member-{i}@bench.example"}
        if holds:
            credential = {
                "id": {"S": f"{i:043d}"},
                "transports": shapes[True]["credentials"]["M"]["-"]["M"]["transports"],
            }
            member["credentials"] = {"M": {f"key{i:019d}": {"M": credential}}}
        sizes[user_id] = item_bytes(member)
        range_value = DynamoType(member["user_id"])
        partition[range_value] = Item(hash_value, range_value, member)
    # The counters, as the transactions that created the members and registered their keys keep them.
    Organization(org_id, created_at=now, members_total=n, members_with_key=with_key).save()
    client = boto3.client("dynamodb", endpoint_url=stack.endpoint)
    last = {"org_id": {"S": org_id}, "user_id": {"S": f"member-{n - 1:06d}"}}
    if "Item" not in client.get_item(TableName=Member.Meta.table_name, Key=last, ConsistentRead=True):
        raise RuntimeError(
            f"moto's server does not see the members written to its backend ({DEFAULT_ACCOUNT_ID}, {settings().region})"
        )
    return sizes


def _units(size: int) -> int:
    return max(math.ceil(size / _UNIT_BYTES), 1)


# --- before: a Query over every member ---------------------------------------------------------


def _before(stack: LocalStack, org_id: str, sizes_by_user: dict[str, int]) -> CoverageRun:
    """What GET /org/mfa did before the counters: the organization, then every member's key count."""
    from chalicelib.base.models import Member, Organization

    connection = Member._get_connection()
    before = stack.counter.snapshot()
    started = time.perf_counter()
    organization = Organization.get(org_id, consistent_read=True)
    total = compliant = 0
    start_key = None
    while True:
        # The same Query the endpoint sent, read page by page.
        page = connection.query(
            org_id, consistent_read=True, attributes_to_get=["key_count"], exclusive_start_key=start_key
        )
        items = page.get("Items", [])
        total += len(items)
        compliant += sum(int(item["key_count"]["N"]) > 0 for item in items)
        start_key = page.get("LastEvaluatedKey")
        if not start_key:
            break
    seconds = time.perf_counter() - started
    calls = stack.counter.since(before)

    # DynamoDB's pages: the members in key order, up to 1 MB of them (their full size) a page,
    # each page rounded up to 4 KB.
    pages = units = 0
    page_bytes = 0
    for user_id in sorted(sizes_by_user):
        page_bytes += sizes_by_user[user_id]
        if page_bytes >= _PAGE_BYTES:
            pages, units, page_bytes = pages + 1, units + _units(page_bytes), 0
    if page_bytes or not pages:
        pages, units = pages + 1, units + _units(page_bytes)
    org_units = _units(item_bytes(organization.serialize()))
    return CoverageRun(
        "before: the organization, then a Query over every member",
        calls,
        1 + pages,
        float(org_units + units),
        seconds,
        total,
        compliant,
    )


# --- after: the counters ------------------------------------------------------------------------


def _after(stack: LocalStack, org_id: str) -> CoverageRun:
    """GET /org/mfa now, through the API, its read units computed from the items its requests named."""
    from chalice.test import Client

    from app import app
    from tests.support.keyward_client import KeywardClient

    with Client(app) as chalice_client:
        api = KeywardClient(client=chalice_client, idp=stack.idp)
        admin = api.login(org=org_id, user="bench-admin", admin=True)
        before = stack.counter.snapshot()
        with stack.counter.recording() as sent:
            started = time.perf_counter()
            reply = api.call("GET", "/org/mfa", token=admin.token)
            seconds = time.perf_counter() - started
        calls = stack.counter.since(before)
    if reply.status != 200:
        raise RuntimeError(f"GET /org/mfa: {reply.status} {reply.body}")
    units = sum(_read_units(operation, body) for operation, body in sent)
    return CoverageRun(
        "after: the whole request, counters on the organization",
        calls,
        sum(calls.values()),
        float(units),
        seconds,
        reply.body["members_total"],
        reply.body["members_compliant"],
    )


def _read_units(operation: str, body: dict[str, Any]) -> int:
    """What DynamoDB charges for one request that names its items by key."""
    if operation == "GetItem":
        units = _units(_stored_bytes(body["TableName"], body["Key"]))
        return units if body.get("ConsistentRead") else math.ceil(units / 2)
    if operation == "TransactGetItems":
        return sum(
            2 * _units(_stored_bytes(get["Get"]["TableName"], get["Get"]["Key"])) for get in body["TransactItems"]
        )
    if operation == "BatchGetItem":
        return sum(
            _units(_stored_bytes(table, key))
            for table, request in body["RequestItems"].items()
            for key in request["Keys"]
        )
    raise ValueError(f"{operation}: read units are computed here only for requests that name their items")


def _stored_bytes(table_name: str, key: dict[str, Any]) -> int:
    """The full size of the item stored under ``key`` (0 when there is none)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType

    from chalicelib.base.config import settings

    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][settings().region].get_table(table_name)
    range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
    item = table.get_item(DynamoType(key[table.hash_key_attr]), range_value)
    return item_bytes(item.to_json()["Attributes"]) if item is not None else 0


# --- the report ---------------------------------------------------------------------------------


def report(figures: list[CoverageFigures]) -> list[str]:
    lines = [
        "## GET /org/mfa by organization size",
        "",
        "Three in four members hold a key. Read units as DynamoDB charges them, computed from "
        "the items' full sizes (moto reports a fixed figure).",
        "",
        "| Members | How | Round trips (moto) | Round trips (DynamoDB) | Read units | Time on moto "
        "| members_total | members_compliant |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        for run in (f.before, f.after):
            calls = ", ".join(f"{name} {count:,}" for name, count in sorted(run.calls.items(), key=lambda kv: -kv[1]))
            lines.append(
                f"| {f.members:,} | {run.how} | {run.round_trips:,} ({calls}) | {run.dynamodb_round_trips:,} "
                f"| {run.read_units:,.0f} | {run.seconds:.2f} s | {run.members_total:,} "
                f"| {run.members_compliant:,} |"
            )
    lines.append("")
    costs = {(f.after.round_trips, f.after.read_units) for f in figures}
    sizes = " and ".join(f"{f.members:,}" for f in figures)
    lines.append(
        f"{'PASS' if len(costs) == 1 else 'FAIL'}: GET /org/mfa costs "
        f"{' / '.join(f'{trips} round trips and {units:,.0f} read units' for trips, units in sorted(costs))} "
        f"at {sizes} members (target: the same at any size)"
    )
    for f in figures:
        lines.append(
            f"N={f.members:,}: members average {f.member_bytes / f.members:.0f} bytes "
            f"({f.member_bytes / 1024 / 1024:.1f} MB in all); written into moto in {f.load_seconds:.0f} s"
        )
    return lines


if __name__ == "__main__":
    # `python -m bench.coverage 2000` measures one smaller organization, to try it quickly.
    sizes = [int(size) for size in sys.argv[1:]] or list(SIZES)
    print("\n".join(report(measure_coverage(sizes))))
