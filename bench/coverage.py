"""``GET /org/mfa`` on an organization of 100,000 members: before (counting every member with a
Query, as the endpoint did) and after (the coverage counters on the organization item).

Round trips are counted on the wire (botocore's before-send event). Read units are DynamoDB's
rule applied to what each request reads — moto does not report consumed capacity: a strongly
consistent read costs one unit per 4 KB, a Query rounds up the summed size of the items it
reads per page (projection does not lower it), a GetItem rounds up its item's size.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

from bench.stack import LocalStack, local_stack

MEMBERS = 100_000
ORG = "bench-coverage"
_UNIT_BYTES = 4096
_PAGE_BYTES = 1024 * 1024  # a Query page reads at most 1 MB


@dataclass(frozen=True)
class CoverageRun:
    how: str
    round_trips: int
    # What DynamoDB itself would need: moto pages a Query by the projected size, DynamoDB by the
    # size of the items read (1 MB a page).
    dynamodb_round_trips: int
    read_units: float
    seconds: float
    members_total: int
    members_compliant: int


def _item_bytes(item: dict) -> int:
    """DynamoDB's item size: attribute names plus values (strings and numbers roughly by length)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        [(kind, content)] = value.items()
        if kind == "M":
            size += 3 + _item_bytes(content)
        elif kind == "BOOL" or kind == "NULL":
            size += 1
        elif kind == "N":
            size += math.ceil(len(content.lstrip("-").replace(".", "")) / 2) + 1
        else:
            size += len(content.encode()) if isinstance(content, str) else len(content)
    return size


def _populate(stack: LocalStack) -> None:
    from chalicelib import clock, coverage
    from chalicelib.coverage import Bucket
    from chalicelib.models import Member, Organization

    started = time.perf_counter()
    now = clock.now()
    with_key = 0
    with Member.batch_write() as batch:
        for n in range(MEMBERS):
            keys = 1 if n % 4 else 0  # three in four hold a key
            with_key += keys > 0
            batch.save(Member(ORG, f"member-{n:06d}", name=f"Member {n}", email=f"member-{n}@bench.example",
                              key_count=keys, created_at=now, last_login_at=now,
                              coverage=coverage.coverage_key(org_id=ORG, bucket=Bucket.ONE if keys else Bucket.NONE)))
    Organization(ORG, created_at=now, members_total=MEMBERS, members_with_key=with_key).save()
    print(f"  [coverage] {MEMBERS} members written in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def _before(stack: LocalStack) -> CoverageRun:
    """What GET /org/mfa did before the counters: the organization, then every member's key count."""
    from chalicelib.models import Member, Organization

    connection = Member._get_connection()
    before = stack.counter.snapshot()
    started = time.perf_counter()
    Organization.get(ORG, consistent_read=True)
    units = 1.0
    total = compliant = 0
    read_bytes = 0
    start_key = None
    while True:
        # The same Query the endpoint sent, read page by page to measure what each page read.
        page = connection.query(ORG, consistent_read=True, attributes_to_get=["key_count"],
                                exclusive_start_key=start_key)
        items = page.get("Items", [])
        total += len(items)
        compliant += sum(int(item["key_count"]["N"]) > 0 for item in items)
        start_key = page.get("LastEvaluatedKey")
        # Units are charged on the items' full size, whatever the projection.
        full = _full_sizes(items, start_key)
        read_bytes += full
        units += math.ceil(full / _UNIT_BYTES)
        if not start_key:
            break
    seconds = time.perf_counter() - started
    return CoverageRun("before: Query over every member", sum(stack.counter.since(before).values()),
                       1 + max(math.ceil(read_bytes / _PAGE_BYTES), 1), units, seconds, total, compliant)


_SAMPLE_SIZE: int | None = None


def _full_sizes(items: list[dict], _start_key: object) -> int:
    """The full size of the members a page read: every bench member has the same shape."""
    global _SAMPLE_SIZE
    if _SAMPLE_SIZE is None:
        from chalicelib.models import Member

        sample = Member._get_connection().get_item(ORG, "member-000001", consistent_read=True)["Item"]
        _SAMPLE_SIZE = _item_bytes(sample)
    return _SAMPLE_SIZE * len(items)


def _after(stack: LocalStack) -> CoverageRun:
    """GET /org/mfa now, through the API: the session's one read, then the organization item."""
    from chalice.test import Client

    from app import app
    from chalicelib.models import Organization
    from tests.keyward_client import KeywardClient

    with Client(app) as chalice_client:
        api = KeywardClient(client=chalice_client, idp=stack.idp)
        admin = api.login(org=ORG, user="bench-admin", admin=True)
        before = stack.counter.snapshot()
        started = time.perf_counter()
        reply = api.call("GET", "/org/mfa", token=admin.token)
        seconds = time.perf_counter() - started
        calls = stack.counter.since(before)
    if reply.status != 200:
        raise RuntimeError(f"GET /org/mfa: {reply.status} {reply.body}")
    org_item = Organization._get_connection().get_item(ORG, consistent_read=True)["Item"]
    # The request's own reads: the session's transactional read of session, organization and
    # member (two units per item read in a transaction), then the organization item for the status.
    units = 2 * 3 + math.ceil(_item_bytes(org_item) / _UNIT_BYTES)
    return CoverageRun("after: the organization's counters (whole request)", sum(calls.values()), sum(calls.values()),
                       float(units),
                       seconds, reply.body["members_total"], reply.body["members_compliant"])


def measure_coverage() -> list[CoverageRun]:
    from bench.stack import MOTO_READ_TIMEOUT_SECONDS

    stack = local_stack()
    from chalicelib.models import Member

    # moto sorts the whole partition for every Query page (see bench/stack.py): allow for it, in
    # a new connection for the members table.
    Member.Meta.read_timeout_seconds = MOTO_READ_TIMEOUT_SECONDS
    Member._connection = None
    _populate(stack)
    return [_before(stack), _after(stack)]


def report(runs: list[CoverageRun]) -> list[str]:
    lines = [f"## GET /org/mfa at {MEMBERS:,} members", "",
             "| How | Round trips (moto) | Round trips (DynamoDB) | Read units | Time on moto | members_total | members_compliant |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        lines.append(f"| {run.how} | {run.round_trips} | {run.dynamodb_round_trips} | {run.read_units:,.0f} | {run.seconds:.2f} s | "
                     f"{run.members_total:,} | {run.members_compliant:,} |")
    return lines


if __name__ == "__main__":
    if len(sys.argv) > 1:  # a smaller organization, to try it quickly
        MEMBERS = int(sys.argv[1])
    print("\n".join(report(measure_coverage())))
