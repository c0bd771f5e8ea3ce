"""Ending an organization's sessions after it enforces MFA, against a plain boto3 loop.

For each size N, on the local stack (moto in this process, see :mod:`bench.stack`):

- keyward: an organization gets N sessions of enforcement generation 0, then its item is set
  as an enforcement sets it (generation 1, ``invalidation`` running), and
  ``invalidation.continue_invalidation`` runs with all the time in the world. Its DynamoDB
  requests are counted by operation and compared with the least any deletion needs: one
  BatchWriteItem per 25 sessions, plus the query pages that found them.
- baseline: another organization gets the same N sessions, and a boto3 loop pages through each
  shard of the by-org-shard index in turn
  (``table.query(IndexName="by-org-shard", KeyConditionExpression=Key("org_shard").eq(...))``)
  and deletes every item with ``table.batch_writer()``.

The sessions belong to N members, spread over the index's shards as keyward spreads them.

Only the deletion is timed; writing the sessions is setup, done straight in moto's backend.
Each run starts on a sessions table holding only its own organization's sessions, and is checked
afterwards: no session of the organization left, and for keyward
``invalidation.sessions_ended == N`` and ``state == "done"``.

moto answers a Query of a global index by looking at every item of the table; for the whole
measurement :func:`bench.moto_index.indexed_global_queries` has it look at the asked shard's
items only, with the same answers, so that a shard's page costs what the shard holds and the
run grows with N, not N². moto is still no model of DynamoDB's speed: each Query page sorts its
shard and walks it up to the page's start in Python, and it serializes every item of a response
attribute by attribute, which makes full items costly to return. The figures compare the two
loops on the same local DynamoDB; they do not predict times on AWS.
"""

from __future__ import annotations

import functools
import math
import random
import string
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.stack import LocalStack, local_stack

# With the shard queries walking one shard (bench/moto_index.py) the run grows with N: both sizes
# take about 6 minutes on 2 CPUs, the baseline most of it. 1,000,000 is opt-in
# (--sizes 1000000): about ten times the 100,000 run, and about 11 GB of memory (5.5 GB at 500,000).
SIZES = (10_000, 100_000)
BATCH_SIZE = 25  # BatchWriteItem's limit
MAX_OVERHEAD = 0.05
PLOT = Path(__file__).resolve().parent.parent / "docs" / "performance-invalidation.svg"

_ID_ALPHABET = string.ascii_letters + string.digits + "-_"


@dataclass(frozen=True)
class Run:
    """One timed deletion of all of an organization's sessions."""

    seconds: float
    requests: Counter[str]
    sessions: int
    # Timed under cProfile (--profile): several times slower, not a figure to compare.
    profiled: bool = False

    @property
    def sessions_per_second(self) -> float:
        return self.sessions / self.seconds


@dataclass(frozen=True)
class SizeFigures:
    sessions: int
    keyward: Run
    baseline: Run

    @property
    def minimum_requests(self) -> int:
        """One BatchWriteItem per 25 sessions, plus the query pages keyward needed."""
        return math.ceil(self.sessions / BATCH_SIZE) + self.keyward.requests["Query"]

    @property
    def overhead(self) -> float:
        return sum(self.keyward.requests.values()) / self.minimum_requests - 1


class _Unlimited:
    """A deadline that never comes: the whole deletion runs in one call."""

    def seconds_left(self) -> float:
        return math.inf


def measure_invalidation(sizes: Sequence[int] = SIZES, *, profile_size: int | None = None) -> list[SizeFigures]:
    stack = local_stack()
    from bench.moto_index import indexed_global_queries  # imports moto: after local_stack()
    from chalicelib.base.models import Session

    Session.exists()  # creates PynamoDB's client for sessions before anything is timed
    figures = []
    # Each shard's Query page walks that shard's sessions, not the table's (bench/moto_index.py).
    with indexed_global_queries():
        for n in sizes:
            keyward = _timed("keyward", n, functools.partial(_keyward_run, stack, n, profile=profile_size == n))
            baseline = _timed("baseline", n, functools.partial(_baseline_run, stack, n))
            figures.append(SizeFigures(sessions=n, keyward=keyward, baseline=baseline))
    return figures


def _timed(name: str, n: int, run: Callable[[], Run]) -> Run:
    started = time.perf_counter()
    result = run()
    _progress(
        f"{name} N={n}: deleted in {result.seconds:.1f} s ({time.perf_counter() - started:.0f} s with setup and checks)"
    )
    return result


def _progress(message: str) -> None:
    print(f"  [invalidation] {message}", file=sys.stderr, flush=True)


# --- keyward ------------------------------------------------------------------------------------


def _keyward_run(stack: LocalStack, n: int, *, profile: bool) -> Run:
    from chalicelib.background import invalidation
    from chalicelib.base import clock
    from chalicelib.base.models import Invalidation, Organization

    org_id = f"bench-keyward-{n}"
    Organization(org_id, created_at=clock.now()).save()
    _populate(stack, org_id, n)
    # What _enforce writes (no enforcing session to spare: every session ends).
    enforced_at = clock.now()
    Organization(org_id).update(
        actions=[
            Organization.mfa_enforced.set(True),
            Organization.enforced_at.set(enforced_at),
            Organization.enforced_by.set("bench"),
            Organization.enforcement_generation.set(1),
            Organization.invalidation.set(
                Invalidation(generation=1, state="running", sessions_ended=0, started_at=enforced_at, handoffs=0)
            ),
        ]
    )

    def run() -> None:
        invalidation.continue_invalidation(org_id=org_id, deadline=_Unlimited())

    before = stack.counter.snapshot()
    if profile:
        from bench.profiling import profiled

        seconds, report = profiled(run)
        _progress(f"profile of keyward N={n}:\n{report}")
    else:
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
    requests = stack.counter.since(before)

    left = _sessions_left(stack, org_id)
    progress = Organization.get(org_id, consistent_read=True).invalidation
    if left or progress is None or progress.sessions_ended != n or progress.state != "done":
        raise RuntimeError(
            f"keyward N={n}: {left} sessions left, invalidation {progress and progress.attribute_values}"
        )
    return Run(seconds=seconds, requests=requests, sessions=n, profiled=profile)


# --- baseline -----------------------------------------------------------------------------------


def _baseline_run(stack: LocalStack, n: int) -> Run:
    import boto3
    from boto3.dynamodb.conditions import Key

    from chalicelib.base.models import SESSION_SHARDS, Session, org_shard_key

    org_id = f"bench-baseline-{n}"
    _populate(stack, org_id, n)
    table = boto3.resource("dynamodb", endpoint_url=stack.endpoint).Table(Session.Meta.table_name)
    table.load()  # creates the client and reads the key schema the batch writer needs, untimed

    before = stack.counter.snapshot()
    started = time.perf_counter()
    deleted = 0
    with table.batch_writer() as batch:
        for shard in range(SESSION_SHARDS):
            query: dict[str, Any] = {
                "IndexName": "by-org-shard",
                "KeyConditionExpression": Key("org_shard").eq(org_shard_key(org_id, shard)),
            }
            while True:
                page = table.query(**query)
                for item in page["Items"]:
                    batch.delete_item(Key={"session_id": item["session_id"]})
                    deleted += 1
                if "LastEvaluatedKey" not in page:
                    break
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    seconds = time.perf_counter() - started
    requests = stack.counter.since(before)

    left = _sessions_left(stack, org_id)
    if left or deleted != n:
        raise RuntimeError(f"baseline N={n}: deleted {deleted}, {left} sessions left")
    return Run(seconds=seconds, requests=requests, sessions=n)


# --- setup and checks ---------------------------------------------------------------------------


def _client(stack: LocalStack) -> Any:
    import boto3

    return boto3.client("dynamodb", endpoint_url=stack.endpoint)


def _populate(stack: LocalStack, org_id: str, n: int) -> None:
    """Write ``n`` sessions of enforcement generation 0, shaped as keyward writes them.

    Straight into moto's backend, which runs in this process: through HTTP, moto takes about
    1 ms per item to parse and store, which would make setup the longest part of the bench.
    A GetItem through the endpoint then checks that the server sees them.
    """
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from chalicelib.base import clock
    from chalicelib.base.config import settings
    from chalicelib.base.models import Session, member_session_key, org_shard_key, session_shard

    started = clock.now()
    expires = started + timedelta(hours=12)
    template = Session.of_member(
        "-",
        org_id=org_id,
        user_id="-",
        token_hash="0" * 64,
        state="active",
        admin=False,
        created_at=started,
        expires_at=expires,
        ttl=expires + timedelta(days=1),
        enforcement_generation=0,
        source_ip="203.0.113.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    ).serialize()
    ids = random.Random(org_id)  # IDs shaped as secrets.token_urlsafe(16) makes them, but repeatable
    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][settings().region]
    table = Session.Meta.table_name
    for i in range(n):
        item = dict(template)
        session_id, user_id = "".join(ids.choices(_ID_ALPHABET, k=22)), f"user-{i:07d}"
        item["session_id"] = {"S": session_id}
        item["user_id"] = {"S": user_id}
        item["org_shard"] = {"S": org_shard_key(org_id, session_shard(user_id))}
        item["member_session"] = {"S": member_session_key(user_id, session_id)}
        item["token_hash"] = {"S": f"{ids.getrandbits(256):064x}"}
        backend.put_item(table, item)
    last = {"session_id": item["session_id"]}
    if "Item" not in _client(stack).get_item(TableName=table, Key=last):
        raise RuntimeError(
            "moto's server does not see the sessions written to its backend "
            f"({DEFAULT_ACCOUNT_ID}, {settings().region})"
        )


def _sessions_left(stack: LocalStack, org_id: str) -> int:
    """The organization's sessions still stored: a scan, not the index the deletion read."""
    from chalicelib.base.models import Session

    client = _client(stack)
    scan: dict[str, Any] = {
        "TableName": Session.Meta.table_name,
        "FilterExpression": "org_id = :org",
        "ExpressionAttributeValues": {":org": {"S": org_id}},
        "Select": "COUNT",
        "ConsistentRead": True,
    }
    count = 0
    while True:
        page = client.scan(**scan)
        count += page["Count"]
        if "LastEvaluatedKey" not in page:
            return count
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# --- report -------------------------------------------------------------------------------------


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def report(figures: list[SizeFigures]) -> list[str]:
    from chalicelib.background.invalidation import PAGE_SIZE, PARALLEL_BATCHES, PARALLEL_QUERIES
    from chalicelib.base.models import SESSION_SHARDS

    lines = [
        "## Ending sessions after enforcement",
        "",
        f"keyward: `continue_invalidation`, {SESSION_SHARDS} shards read {PARALLEL_QUERIES} at a time, "
        f"{PAGE_SIZE} keys per query page, BatchWriteItem of {BATCH_SIZE} with {PARALLEL_BATCHES} in "
        "parallel. Baseline: boto3 `query` pages of each shard in turn + `batch_writer()`. "
        "Minimum: ⌈N/25⌉ BatchWriteItem + keyward's Query pages.",
        "",
        "| N | keyward requests | Minimum | Overhead | keyward | keyward sessions/s "
        "| Baseline requests | Baseline | Baseline sessions/s | Speed-up |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for f in figures:
        mark = " (profiled)" if f.keyward.profiled else ""
        lines.append(
            f"| {f.sessions:,} | {_requests(f.keyward.requests)} | {f.minimum_requests:,} | {f.overhead:.1%} "
            f"| {f.keyward.seconds:.1f} s{mark} | {f.keyward.sessions_per_second:,.0f} "
            f"| {_requests(f.baseline.requests)} | {f.baseline.seconds:.1f} s "
            f"| {f.baseline.sessions_per_second:,.0f} | {f.baseline.seconds / f.keyward.seconds:.2f}× |"
        )
    lines.append("")
    for f in figures:
        speed = (
            "keyward's time was taken under cProfile: no verdict on speed"
            if f.keyward.profiled
            else f"{_verdict(f.keyward.seconds < f.baseline.seconds)}: keyward "
            f"{f.keyward.sessions_per_second:,.0f} sessions/s vs baseline "
            f"{f.baseline.sessions_per_second:,.0f} (target: faster)"
        )
        lines.append(
            f"{_verdict(f.overhead <= MAX_OVERHEAD)}: N={f.sessions:,} request overhead "
            f"{f.overhead:.1%} (target ≤ {MAX_OVERHEAD:.0%}); {speed}"
        )
    return lines


def _requests(calls: Counter[str]) -> str:
    total = sum(calls.values())
    parts = ", ".join(f"{name} {count:,}" for name, count in sorted(calls.items(), key=lambda kv: -kv[1]))
    return f"{total:,} ({parts})"


def plot(figures: list[SizeFigures], path: Path = PLOT) -> Path | None:
    """Time against N for keyward and the baseline, as SVG; None if matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Repeatable output: no timestamp, fixed element IDs.
    matplotlib.rcParams["svg.hashsalt"] = "keyward-bench"
    sizes = [f.sessions for f in figures]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(sizes, [f.baseline.seconds for f in figures], "s--", label="baseline: boto3 query + batch_writer")
    ax.plot(sizes, [f.keyward.seconds for f in figures], "o-", label="keyward: continue_invalidation")
    for f in figures:
        for seconds, offset in ((f.baseline.seconds, (6, 4)), (f.keyward.seconds, (6, -12))):
            ax.annotate(
                f"{seconds:.0f} s", (f.sessions, seconds), textcoords="offset points", xytext=offset, fontsize=8
            )
    ax.set_xlabel("sessions deleted (N)")
    ax.set_ylabel("time (s)")
    ax.set_title("Ending an organization's sessions after enforcement (moto, in process)")
    ax.set_xlim(0, max(sizes) * 1.1)
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:.0f}k" if x else "0"))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path
