"""The capacity model's arithmetic (bench/capacity.py): key patterns, the number of random shards
a storm drew from, and the scaling of a storm's writes to R sign-ins a second."""

from __future__ import annotations

import json
import random

import pytest

from bench.baseline import ROOT
from bench.capacity import KeyLoad, Storm, estimated_keys, model, pattern_of, report, verdict

MEMBERS = {"m00001", "m00002"}


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        ("storm", "<org>"),
        ("logins#storm#1796669964#4", "logins#<org>#<second>#<shard>"),
        ("storm#2026-12-07T18#17", "<org>#<bucket>#<shard>"),
        ("storm#m00001", "<org>#<member>"),
        ("AaJR4AAzgJHRM51Ty8ov4A", "<id>"),
        ("storm#none", "<org>#none"),
    ],
)
def test_a_keys_pattern_replaces_the_organization_members_ids_times_and_shards(key, pattern):
    assert pattern_of(key, org_id="storm", members=MEMBERS) == pattern


@pytest.mark.parametrize("shards", [8, 100, 400])
def test_the_number_of_random_shards_is_estimated_from_the_distinct_ones_drawn(shards):
    draw = random.Random(shards)
    draws = 300
    distinct = len({draw.randrange(shards) for _ in range(draws)})
    assert estimated_keys(draws=draws, distinct=distinct) == pytest.approx(shards, rel=0.3)


def test_a_key_drawn_once_per_draw_has_no_finite_estimate_and_one_key_is_one():
    assert estimated_keys(draws=10, distinct=10) == float("inf")
    assert estimated_keys(draws=10, distinct=1) == 1


def _storm(loads: list[KeyLoad], sign_ins: int = 10) -> Storm:
    return Storm(sign_ins=sign_ins, mfa_sign_ins=sign_ins, first_sign_ins=0, step_ups=0, loads=loads)


def test_a_key_every_sign_in_writes_scales_with_the_rate_and_a_key_of_one_sign_in_does_not():
    loads = [KeyLoad("sessions", "storm", "<org>", units=40, writes=20, sign_ins=tuple(range(10)))]
    loads += [KeyLoad("challenges", f"c{i:08d}", "<id>", units=3, writes=2, sign_ins=(i,)) for i in range(10)]
    by_pattern = {(load.where, load.pattern): load for load in model(_storm(loads), rates=(500, 10_000))}

    organization = by_pattern["sessions", "<org>"]
    assert organization.keys == "1"
    assert organization.hottest == {500: 2_000, 10_000: 40_000}
    challenge = by_pattern["challenges", "<id>"]
    assert challenge.keys == "one per sign-in"
    assert challenge.hottest == {500: 3, 10_000: 3}
    passed, over = verdict(model(_storm(loads)))
    assert not passed
    assert [(load.where, load.pattern) for load in over] == [("sessions", "<org>")]


def test_random_shards_share_a_keys_load_and_the_busiest_shard_takes_more_than_its_share():
    draw = random.Random(26)
    sign_ins, shards = 300, 50
    drawn: dict[int, list[int]] = {}
    for i in range(sign_ins):
        drawn.setdefault(draw.randrange(shards), []).append(i)
    loads = [
        KeyLoad(
            "throttles",
            f"logins#storm#1796669964#{shard}",
            "logins#<org>#<second>#<shard>",
            2 * len(who),
            len(who),
            tuple(who),
        )
        for shard, who in drawn.items()
    ]
    [load] = model(_storm(loads, sign_ins=sign_ins), rates=(10_000,))

    # 2 units a sign-in over about 50 shards: about 400 a shard at 10,000 sign-ins a second.
    assert load.expected[10_000] == pytest.approx(2 * 10_000 / shards, rel=0.3)
    assert load.expected[10_000] < load.hottest[10_000] < 2 * load.expected[10_000]


def test_the_report_sets_old_and_new_side_by_side_and_fails_a_key_above_the_target_at_the_top_rate():
    from bench.baseline import Tree

    spread = [
        KeyLoad("sessions", f"s{i:08d}", "<id>", units=6, writes=3, sign_ins=(i,), operations=("login",))
        for i in range(10)
    ]
    shared = [
        KeyLoad("sessions", "storm", "<org>", units=60, writes=30, sign_ins=tuple(range(10)), operations=("login",))
    ]
    lines = report(_storm(spread), _storm(shared), Tree(name="f02df52", root=ROOT))
    text = "\n".join(lines)

    assert "| R = 10,000, old (f02df52) | R = 10,000, new |" in text
    # Rows by the hottest key at the top rate, old or new; a pattern one tree lacks is "–" there.
    assert lines[6:8] == [
        "| `sessions: <org>` | login | old: 1 | old: 6.00 | 3,000 | – | 10,200 | – | 60,000 | – |",
        "| `sessions: <id>` | login | one per sign-in | 6.00 | – | 6 | – | 6 | – | 6 |",
    ]
    assert (
        "FAIL: old (f02df52): no partition key above 1,000 write units/s at 10,000 sign-ins/s; "
        "above it: `sessions: <org>` 60,000" in text
    )
    assert "PASS: new: no partition key above 1,000 write units/s at 10,000 sign-ins/s" in text


def test_the_report_says_why_the_old_codes_storm_did_not_run():
    lines = report(
        _storm([KeyLoad("challenges", "c1", "<id>", units=3, writes=2, sign_ins=(0,))]), "no /auth/reauth/verify"
    )

    assert "The old code's storm did not run: no /auth/reauth/verify" in lines
    assert lines[-1].startswith("PASS: new:")


def test_the_returning_members_sign_ins_are_judged_alone_and_the_enrolments_get_their_cap():
    returning = [
        KeyLoad("sessions", f"s{i:08d}", "<id>", units=6, writes=3, sign_ins=(i,), operations=("login",))
        for i in range(8)
    ]
    # The two enrolments write the organization's item: 4 units an enrolment.
    enrolment = [KeyLoad("orgs", "storm", "<org>", units=8, writes=4, sign_ins=(8, 9), operations=("registration",))]
    storm = Storm(
        sign_ins=10,
        mfa_sign_ins=8,
        first_sign_ins=2,
        step_ups=0,
        loads=returning + enrolment,
        returning_loads=returning,
        enrolment_loads=enrolment,
    )

    lines = report(storm)

    # The mixed storm, one in five an enrolment, puts 8,000 units a second on the organization.
    assert lines[-3].startswith("FAIL: new: ") and "`orgs: <org>` 8,000" in lines[-3]
    assert lines[-2] == (
        "PASS: new, the returning members' sign-ins alone: no partition key above 1,000 write units/s "
        "at 10,000 sign-ins/s"
    )
    assert lines[-1] == (
        "Enrolments (a new member's first login and registration): at most 250 a second in one "
        "organization; `orgs: <org>` takes 4.00 write units each."
    )
    assert Storm.from_json(json.loads(json.dumps(storm.to_json()))) == storm
