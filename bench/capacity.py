"""The capacity model: the write units per second each DynamoDB partition key receives when one
organization signs in R members a second, computed from the writes keyward really makes.

A storm of ``N`` sign-ins in one organization is replayed through the API (``chalice.test.Client``)
against moto in this process, with keyward's clock pinned inside one second, and every write is
recorded by :class:`bench.writes.WriteRecorder`: table, partition key, size and write units, the
indexes' writes included. The mix, for each sign-in: a member with a security key logs in and
passes MFA (login, MFA options, MFA verify); one in :data:`STEP_UP_EVERY` of them then steps up;
one sign-in in :data:`FIRST_SIGN_IN_EVERY` is a new member's first login and registration of a
key instead. The members (one per sign-in: a storm is many people signing in once) and their keys
are set up first, through the same API, unrecorded.

Scaling to R sign-ins a second: keys are grouped by *pattern* (IDs, shards and times replaced by
placeholders, :func:`pattern_of`), and each pattern is one of

- written by one sign-in only (a session, a challenge, a member's own item): the load of its key
  does not grow with R; the figure is the most one sign-in wrote to one key;
- shared by sign-ins (an organization's key, a shard of it): the storm's writes on the pattern are
  ``R / N`` times as many at R, spread over the pattern's keys. Where there are several keys
  (shards drawn at random, say) their number is estimated from how many distinct ones the
  storm's writes drew (:func:`estimated_keys`), the expected load of a key is the pattern's
  share, and the maximum is the busiest key of a simulated second at R (draws at random over
  those keys).

Every key of a second (a login-rate counter of this second) is the key of every second: with the
clock pinned, the storm is one second of a storm at R, whatever R.

The target is judged on the mixed storm and on the returning members' sign-ins alone (login, MFA,
step-up: R of them a second); enrolments (a new member's first login and registration) are
modelled alone too, as the most of them one organization can make a second, since they write
its counters (:func:`enrolment_cap`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bench.baseline import Tree, last_line

if TYPE_CHECKING:
    from bench.writes import Charge

# The commit of today's design (sessions and audit keyed by organization), the default baseline
# of this part.
DEFAULT_REF = "f02df52"
SIGN_INS = 60
RATES = (500, 1_700, 10_000)
# The target: no partition key above this many write units a second at the top rate.
MAX_UNITS_PER_KEY = 1_000
TOP_RATE = RATES[-1]
# The audit shards docs/operations.md ("The audit log's shards") advises at TOP_RATE sign-ins a second.
AUDIT_SHARDS = 64
STEP_UP_EVERY = 5
FIRST_SIGN_IN_EVERY = 10
ORG_ID = "storm"
# The requests of a returning member's sign-in, and of a new member's enrolment.
RETURNING = {"login", "MFA options", "MFA verify", "step-up options", "step-up"}
ENROLMENT = {"first login", "registration"}
_SIMULATIONS = 5


# --- the storm ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyLoad:
    """What the storm wrote on one partition key."""

    where: str  # the table's short name, or "<table> <global index>"
    partition_key: str
    pattern: str
    units: int
    writes: int
    sign_ins: tuple[int, ...]  # which sign-ins wrote it
    operations: tuple[str, ...] = ()  # the requests that wrote it: login, MFA verify, ...


@dataclass(frozen=True)
class Storm:
    """One replayed storm: its mix and the writes on each partition key."""

    sign_ins: int
    mfa_sign_ins: int
    first_sign_ins: int
    step_ups: int
    loads: list[KeyLoad]
    # Tables whose writes land in one item collection that a local secondary index keeps whole.
    with_local_index: list[str] = field(default_factory=list)
    # The same writes split by who made them: the returning members' sign-ins (login, MFA,
    # step-up) and the enrolments (a new member's first login and registration). Empty in a
    # storm recorded by code older than the split.
    returning_loads: list[KeyLoad] = field(default_factory=list)
    enrolment_loads: list[KeyLoad] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, found: dict[str, Any]) -> Storm:
        def key_loads(name: str) -> list[KeyLoad]:
            return [
                KeyLoad(**{**load, "sign_ins": tuple(load["sign_ins"]), "operations": tuple(load["operations"])})
                for load in found.pop(name, [])
            ]

        loads, returning, enrolment = key_loads("loads"), key_loads("returning_loads"), key_loads("enrolment_loads")
        return cls(loads=loads, returning_loads=returning, enrolment_loads=enrolment, **found)

    def returning(self) -> Storm:
        """The storm of the returning members' sign-ins alone: R of them a second."""
        return dataclasses.replace(self, sign_ins=self.mfa_sign_ins, first_sign_ins=0, loads=self.returning_loads)

    def enrolments(self) -> Storm:
        """The storm of the enrolments alone: R of them a second."""
        return dataclasses.replace(
            self, sign_ins=self.first_sign_ins, mfa_sign_ins=0, step_ups=0, loads=self.enrolment_loads
        )


class _PinnedClock:
    """keyward's clock inside one second: each reading a microsecond after the last."""

    def __init__(self, second: int) -> None:
        self.start = datetime.fromtimestamp(second, UTC)
        self.readings = 0

    def __call__(self) -> datetime:
        self.readings += 1
        if self.readings >= 1_000_000:
            raise RuntimeError("the storm read the clock more often than one second holds microseconds")
        return self.start + timedelta(microseconds=self.readings)


@contextmanager
def _pinned_clock() -> Iterator[_PinnedClock]:
    clock = importlib.import_module("chalicelib.base.clock")
    real = clock.now
    # A second after the set-up, so that nothing the storm reads was written in its future.
    pinned = _PinnedClock(int(real().timestamp()) + 1)
    clock.now = pinned
    try:
        yield pinned
    finally:
        clock.now = real


def _allow_the_top_rate() -> None:
    """The organization's login rate, where the code has one, set to the storm's top rate: an
    organization that signs in 10,000 members a second is one its operator allows to."""
    try:
        login_rate = importlib.import_module("chalicelib.access.login_rate")
    except ModuleNotFoundError:
        return
    login_rate.set_limit(org_id=ORG_ID, rate=TOP_RATE)


def _spread_the_audit_log() -> None:
    """The organization's audit shards, where the code has them, set as docs/operations.md advises
    for the storm's top rate, and in force already (set as if two hours ago): its operator would
    have set them before the storm."""
    try:
        audit_shards = importlib.import_module("chalicelib.base.audit_shards")
    except ModuleNotFoundError:
        return
    clock = importlib.import_module("chalicelib.base.clock")
    audit_shards.set_count(
        org_id=ORG_ID, shards=AUDIT_SHARDS, now=clock.now() - timedelta(hours=2), retention=timedelta(days=1)
    )


def measure_capacity(sign_ins: int = SIGN_INS) -> Storm:
    """Replay a storm of ``sign_ins`` sign-ins in one organization on the local stack (moto in this
    process) and record every write."""
    from bench.stack import local_stack, test_support
    from bench.writes import MotoItems, WriteRecorder, drop_keyward_connections

    stack = local_stack()
    from chalice.test import Client

    from app import app

    KeywardClient = test_support("keyward_client").KeywardClient
    SoftwareAuthenticator = test_support("authenticator").SoftwareAuthenticator
    recorder = WriteRecorder(MotoItems())
    with Client(app) as chalice_client, recorder.installed(fresh_connections=drop_keyward_connections):
        api = KeywardClient(client=chalice_client, idp=stack.idp)

        def expect(reply: Any, status: int, what: str) -> Any:
            if reply.status != status:
                raise RuntimeError(f"{what}: expected HTTP {status}, got {reply.status}: {reply.body}")
            return reply.body

        # The set-up: an admin, then one member with a key for each returning sign-in.
        expect(api.login_reply(org=ORG_ID, user="admin", admin=True), 200, "the admin's first login")
        _allow_the_top_rate()
        _spread_the_audit_log()
        plan = ["first" if i % FIRST_SIGN_IN_EVERY == FIRST_SIGN_IN_EVERY - 1 else "mfa" for i in range(sign_ins)]
        keys: dict[int, Any] = {}
        for i, kind in enumerate(plan):
            if kind == "mfa":
                member = api.login(org=ORG_ID, user=f"m{i:05d}")
                keys[i] = SoftwareAuthenticator()
                expect(api.add_key(member, keys[i]), 201, "a member's registration")

        mfa_sign_ins = first_sign_ins = step_ups = 0
        charges_by_sign_in: list[list[tuple[str, Charge]]] = []
        schemas = _Schemas(stack.endpoint)

        def step(operation: str, status: int, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            """One request of the current sign-in, its writes recorded under ``operation``."""
            with recorder.recording() as written:
                body = expect(call(*args, **kwargs), status, operation)
            charges_by_sign_in[-1].extend((operation, charge) for write in written for charge in schemas.charges(write))
            return body

        def answer(options: dict[str, Any], key: Any) -> dict[str, Any]:
            return {"challenge_id": options["challenge_id"], "credential": key.authenticate(options["publicKey"])}

        with _pinned_clock():
            for i, kind in enumerate(plan):
                user = f"m{i:05d}"
                charges_by_sign_in.append([])
                if kind == "first":
                    first_sign_ins += 1
                    token = step("first login", 200, api.login_reply, org=ORG_ID, user=user)["token"]
                    step("registration", 201, api.add_key, _member(user, token), SoftwareAuthenticator())
                    continue
                mfa_sign_ins += 1
                token = step("login", 200, api.login_reply, org=ORG_ID, user=user)["token"]
                options = step("MFA options", 200, api.call, "POST", "/auth/mfa/options", token=token)
                body = answer(options, keys[i])
                token = step("MFA verify", 200, api.call, "POST", "/auth/mfa/verify", token=token, body=body)["token"]
                if mfa_sign_ins % STEP_UP_EVERY == 0:
                    step_ups += 1
                    options = step("step-up options", 200, api.call, "POST", "/auth/reauth/options", token=token)
                    body = answer(options, keys[i])
                    step("step-up", 200, api.call, "POST", "/auth/reauth/verify", token=token, body=body)
    members = {f"m{i:05d}" for i in range(sign_ins)} | {"admin"}

    def loads_of(operations: set[str] | None = None) -> list[KeyLoad]:
        charges = [
            [(operation, charge) for operation, charge in made if operations is None or operation in operations]
            for made in charges_by_sign_in
        ]
        return _loads(charges, schemas.short_names(), org_id=ORG_ID, members=members)

    return Storm(
        sign_ins=sign_ins,
        mfa_sign_ins=mfa_sign_ins,
        first_sign_ins=first_sign_ins,
        step_ups=step_ups,
        loads=loads_of(),
        with_local_index=sorted(schemas.with_local_index()),
        returning_loads=loads_of(RETURNING),
        enrolment_loads=loads_of(ENROLMENT),
    )


def _member(user: str, token: str) -> Any:
    """The test client's member for a session that has just logged in."""
    from bench.stack import test_support

    return test_support("keyward_client").Member(org=ORG_ID, user=user, token=token, state="active")


class _Schemas:
    """The key schemas of the tables written, from DescribeTable, each read once."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        from bench.stack import tree_models

        self._client = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name=tree_models().Organization.Meta.region,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        self._found: dict[str, Any] = {}

    def charges(self, write: Any) -> list[Charge]:
        from bench.writes import charges, key_schema

        if write.table not in self._found:
            self._found[write.table] = key_schema(self._client.describe_table(TableName=write.table)["Table"])
        return charges(write, self._found[write.table])

    def with_local_index(self) -> list[str]:
        names = self.short_names()
        return [
            names.get(table, table)
            for table, schema in self._found.items()
            if any(not index.is_global for index in schema.indexes)
        ]

    @staticmethod
    def short_names() -> dict[str, str]:
        """Each table's name in keyward's settings (``sessions``), by its deployed name."""
        config = importlib.import_module("chalicelib.base.config")
        tables = config.settings().tables
        return {name: short for short, name in dataclasses.asdict(tables).items()}


# --- patterns ---------------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"([#|/])")
_TIME = re.compile(r"^\d{4}-?\d{2}-?\d{2}([T ]?[\d:.\-]*Z?)?$")


def pattern_of(partition_key: str, *, org_id: str, members: set[str], second: int | None = None) -> str:
    """The key with its organization, members, IDs, times and shards replaced by placeholders:
    ``logins#storm#1796669964#4`` is ``logins#<org>#<second>#<shard>``."""
    parts = []
    for part in _SEPARATORS.split(partition_key):
        if _SEPARATORS.fullmatch(part) or part == "":
            parts.append(part)
        elif part == org_id:
            parts.append("<org>")
        elif part in members:
            parts.append("<member>")
        elif part.isdigit() and len(part) == 10 and (second is None or abs(int(part) - second) < 86_400):
            parts.append("<second>")
        elif part.isdigit() and len(part) <= 4:
            parts.append("<shard>")
        elif _TIME.match(part) or part.isdigit():
            parts.append("<bucket>")
        elif len(part) >= 8 or any(character.isdigit() for character in part):
            parts.append("<id>")
        else:
            parts.append(part)
    return "".join(parts)


def _loads(
    charges_by_sign_in: list[list[tuple[str, Charge]]], short_names: dict[str, str], *, org_id: str, members: set[str]
) -> list[KeyLoad]:
    units: dict[tuple[str, str], int] = defaultdict(int)
    writes: dict[tuple[str, str], int] = defaultdict(int)
    sign_ins: dict[tuple[str, str], set[int]] = defaultdict(set)
    operations: dict[tuple[str, str], dict[str, None]] = defaultdict(dict)
    for i, charges in enumerate(charges_by_sign_in):
        for operation, charge in charges:
            table = short_names.get(charge.table, charge.table)
            where = f"{table} {charge.index}" if charge.global_index else table
            key = (where, charge.partition_key)
            units[key] += charge.units
            writes[key] += 1
            sign_ins[key].add(i)
            operations[key][operation] = None
    return [
        KeyLoad(
            where=where,
            partition_key=partition_key,
            pattern=pattern_of(partition_key, org_id=org_id, members=members),
            units=units[where, partition_key],
            writes=writes[where, partition_key],
            sign_ins=tuple(sorted(sign_ins[where, partition_key])),
            operations=tuple(operations[where, partition_key]),
        )
        for where, partition_key in sorted(units)
    ]


# --- the model ------------------------------------------------------------------------------------


def estimated_keys(*, draws: int, distinct: int) -> float:
    """How many keys ``draws`` uniform random draws came from, having drawn ``distinct`` of them:
    the K for which the expected number of distinct keys, K·(1 − (1 − 1/K)^draws), is ``distinct``
    (``math.inf`` when no key was drawn twice)."""
    if distinct >= draws:
        return math.inf
    if distinct <= 1:
        return 1.0

    def expected(keys: float) -> float:
        return keys * (1 - (1 - 1 / keys) ** draws)

    low, high = float(distinct), float(distinct)
    while expected(high) < distinct:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if expected(middle) < distinct else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class PatternLoad:
    """The write units a second the keys of one pattern receive at a rate of sign-ins."""

    where: str
    pattern: str
    keys: str  # how many keys share the load: "one per sign-in", "1", "≈400 (…)"
    units_per_sign_in: float
    expected: dict[int, float]  # by rate: a key's expected write units a second
    hottest: dict[int, float]  # by rate: the busiest key's
    operations: tuple[str, ...] = ()  # the requests that write it


def model(storm: Storm, rates: Sequence[int] = RATES, *, seed: int = 26) -> list[PatternLoad]:
    """Each pattern's load at each of ``rates`` sign-ins a second (see the module's docstring)."""
    by_pattern: dict[tuple[str, str], list[KeyLoad]] = defaultdict(list)
    for load in storm.loads:
        by_pattern[load.where, load.pattern].append(load)
    found = []
    draw = random.Random(seed)
    for (where, pattern), loads in sorted(by_pattern.items()):
        total = sum(load.units for load in loads)
        per_sign_in = total / storm.sign_ins
        operations = tuple(dict.fromkeys(operation for load in loads for operation in load.operations))
        if all(len(load.sign_ins) == 1 for load in loads):
            most, mean = max(load.units for load in loads), total / len(loads)
            expected, hottest = dict.fromkeys(rates, mean), dict.fromkeys(rates, float(most))
            found.append(PatternLoad(where, pattern, "one per sign-in", per_sign_in, expected, hottest, operations))
            continue
        # A draw is a sign-in writing a key: one sign-in's writes on one key are one draw, so that
        # keys chosen per sign-in (from its session, say) are not taken for collisions.
        draws = sum(len(load.sign_ins) for load in loads)
        keys = estimated_keys(draws=draws, distinct=len(loads))
        expected = {rate: per_sign_in * rate / keys for rate in rates}
        if len(loads) == 1:
            shared_by, hottest = "1", dict(expected)
        else:
            shared_by = f"≈{keys:,.0f} ({draws} draws on {len(loads)} keys)"
            per_draw = total / draws
            hottest = {
                rate: per_draw * _busiest(draw, draws=round(draws * rate / storm.sign_ins), keys=round(keys))
                for rate in rates
            }
        found.append(PatternLoad(where, pattern, shared_by, per_sign_in, expected, hottest, operations))
    return found


def _busiest(draw: random.Random, *, draws: int, keys: int) -> float:
    """The mean over a few simulated seconds of the most draws one of ``keys`` got."""
    most = []
    for _ in range(_SIMULATIONS):
        counts = [0] * keys
        for _ in range(draws):
            counts[draw.randrange(keys)] += 1
        most.append(max(counts))
    return sum(most) / len(most)


# --- the baseline, in its own process -------------------------------------------------------------------


@contextmanager
def capacity_in(tree: Tree, sign_ins: int) -> Iterator[Callable[[], Storm | str]]:
    """The storm against another tree of keyward, started in a process of its own; the function
    given waits for it and returns its storm, or why it could not run. The process is stopped if
    the block ends before it does."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    # Files, not pipes: keyward logs a line a request, and a full pipe would stop the process
    # until this one reads it, after its own storm.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", "capacity", str(sign_ins)],
            cwd=tree.root,
            env=environment,
            stdout=out,
            stderr=err,
            text=True,
        )

        def finished() -> Storm | str:
            started.wait()
            out.seek(0)
            err.seek(0)
            if started.returncode != 0:
                return last_line(err.read())
            return Storm.from_json(json.loads(out.read().splitlines()[-1]))

        try:
            yield finished
        finally:
            if started.poll() is None:
                started.kill()
                started.wait()


# --- the report ---------------------------------------------------------------------------------------


def _figure(load: PatternLoad | None, rate: int) -> str:
    if load is None:
        return "–"
    expected, hottest = load.expected[rate], load.hottest[rate]
    if round(hottest) == round(expected):
        return f"{hottest:,.0f}"
    return f"{expected:,.0f} (max {hottest:,.0f})"


def verdict(loads: list[PatternLoad]) -> tuple[bool, list[PatternLoad]]:
    """Whether no key exceeds the target at the top rate; the patterns that do."""
    over = [load for load in loads if load.hottest[TOP_RATE] > MAX_UNITS_PER_KEY]
    return not over, over


def report(new: Storm, old: Storm | str | None = None, old_tree: Tree | None = None) -> list[str]:
    new_loads = model(new)
    old_loads = model(old) if isinstance(old, Storm) else []
    old_name = old_tree.name if old_tree else "–"
    lines = [
        "## Capacity: write units a second on each partition key, one organization signing in R members a second",
        "",
        f"A storm of {new.sign_ins} sign-ins in one organization, keyward's clock pinned inside one second: "
        f"{new.mfa_sign_ins} logins with MFA (login, MFA options, MFA verify), {new.step_ups} of them followed by a "
        f"step-up, and {new.first_sign_ins} first logins with a registration. Every write recorded (indexes' "
        f"included), scaled to R. Per key pattern: the hottest key's write units a second (the expected load of "
        f"a key, and in brackets the busiest key of a second, where random shards share the load).",
        "",
    ]
    header = "| Partition key | Written by | Keys sharing the load | Units / sign-in |"
    rule = "|---|---|---|---:|"
    for rate in RATES:
        if old is not None:
            header += f" R = {rate:,}, old ({old_name}) |"
            rule += "---:|"
        header += f" R = {rate:,}, new |"
        rule += "---:|"
    lines += [header, rule]
    old_by = {(load.where, load.pattern): load for load in old_loads}
    new_by = {(load.where, load.pattern): load for load in new_loads}
    for name in sorted(
        set(old_by) | set(new_by),
        key=lambda name: (
            -max((load.hottest[TOP_RATE] for load in (old_by.get(name), new_by.get(name)) if load), default=0)
        ),
    ):
        now, before = new_by.get(name), old_by.get(name)
        row = f"| `{name[0]}: {name[1]}` | {', '.join(_union(before, now, 'operations'))} |"
        row += f" {_either(before, now, lambda load: load.keys)} |"
        row += f" {_either(before, now, lambda load: f'{load.units_per_sign_in:.2f}')} |"
        for rate in RATES:
            if old is not None:
                row += f" {_figure(before, rate)} |"
            row += f" {_figure(now, rate)} |"
        lines.append(row)
    if new.with_local_index:
        lines += [
            "",
            "Tables with a local secondary index (an organization's item collection stays on one partition): "
            + ", ".join(new.with_local_index),
        ]
    lines.append("")
    if isinstance(old, str):
        lines.append(f"The old code's storm did not run: {old}")
    elif isinstance(old, Storm):
        passed, over = verdict(old_loads)
        lines.append(_verdict_line(f"old ({old_name})", passed, over))
    passed, over = verdict(new_loads)
    lines.append(_verdict_line("new", passed, over))
    if new.returning_loads:
        passed, over = verdict(model(new.returning()))
        lines.append(_verdict_line("new, the returning members' sign-ins alone", passed, over))
    if new.enrolment_loads and new.first_sign_ins:
        lines.append(enrolment_line(model(new.enrolments(), rates=(TOP_RATE,))))
    return lines


def enrolment_cap(loads: list[PatternLoad]) -> tuple[float, PatternLoad]:
    """How many enrolments a second one organization can make before a key passes the target
    (a key's load grows in proportion to the rate), and the key that caps it."""
    hottest = max(loads, key=lambda load: load.hottest[TOP_RATE])
    return MAX_UNITS_PER_KEY * TOP_RATE / hottest.hottest[TOP_RATE], hottest


def enrolment_line(loads: list[PatternLoad]) -> str:
    cap, hottest = enrolment_cap(loads)
    per_enrolment = hottest.hottest[TOP_RATE] / TOP_RATE
    return (
        f"Enrolments (a new member's first login and registration): at most {cap:,.0f} a second in one "
        f"organization; `{hottest.where}: {hottest.pattern}` takes {per_enrolment:.2f} write units each."
    )


def _union(before: PatternLoad | None, now: PatternLoad | None, name: str) -> list[str]:
    return list(dict.fromkeys(value for load in (now, before) if load for value in getattr(load, name)))


def _either(before: PatternLoad | None, now: PatternLoad | None, shown: Callable[[PatternLoad], str]) -> str:
    """The new tree's figure, and the old one's too where it differs."""
    if now is None:
        return f"old: {shown(before)}" if before else "–"
    if before is None or shown(before) == shown(now):
        return shown(now)
    return f"{shown(now)}; old: {shown(before)}"


def _verdict_line(tree: str, passed: bool, over: list[PatternLoad]) -> str:
    target = f"no partition key above {MAX_UNITS_PER_KEY:,} write units/s at {TOP_RATE:,} sign-ins/s"
    if passed:
        return f"PASS: {tree}: {target}"
    hot = ", ".join(f"`{load.where}: {load.pattern}` {load.hottest[TOP_RATE]:,.0f}" for load in over)
    return f"FAIL: {tree}: {target}; above it: {hot}"
