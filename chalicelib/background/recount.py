"""The compliance recount, in the organizations stream function: after a policy change (or a model's
status change) every member holding keys is counted again under the new compliance version, page by
page, resumable across invocations as the enforcement's session clean-up is (the rule of
chalicelib/background/resumable.py). The rule the figures follow: chalicelib/counters/compliance.py."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynamodb.expressions.condition import Condition

from chalicelib.background import resumable
from chalicelib.base import clock
from chalicelib.base.errors import ConcurrentChange
from chalicelib.base.models import ComplianceRecount, Member, Organization, SecurityKey
from chalicelib.base.storage import ConditionsFailed, Item, transaction
from chalicelib.ceremony import authenticator_policy
from chalicelib.counters import compliance, conditions

if TYPE_CHECKING:
    from chalicelib.base.context import Deadline

log = logging.getLogger("keyward.compliance")

# Members examined per query page; progress is saved after each page.
PAGE_SIZE = 200


def process_change(*, old: Mapping[str, Any] | None, new: Mapping[str, Any], deadline: Deadline) -> None:
    """One organizations stream record: a recount that started, or was handed over, goes on; a
    policy changed outside the API (an operator in the AWS console), which moved no version,
    starts one."""
    if (
        old is not None
        and old.get("authenticator_policy") != new.get("authenticator_policy")
        and old.get("compliance_version") == new.get("compliance_version")
    ):
        log.info("organization %s: policy changed outside the API; recounting", new["org_id"]["S"])
        compliance.restart(org_id=new["org_id"]["S"])  # its own stream record runs the recount
        return
    before, after = _recount_of(old), _recount_of(new)
    if after is None or after.get("state", {}).get("S") != compliance.RECOUNTING:
        return
    if (
        before is not None
        and _number(before, "version") == _number(after, "version")
        and _number(before, "handoffs") == _number(after, "handoffs")
    ):
        return
    continue_recount(org_id=new["org_id"]["S"], deadline=deadline, handoffs=_number(after, "handoffs"))


def _recount_of(image: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    value = (image or {}).get("compliance_recount")
    return value.get("M") if value else None


def _number(recount: Mapping[str, Any], name: str) -> int:
    return int(recount.get(name, {}).get("N", 0))


def continue_recount(*, org_id: str, deadline: Deadline, handoffs: int | None = None) -> None:
    """Count the organization's members under its current version, from where the last
    invocation stopped. ``handoffs`` is the continuation a stream record asks for; a record of an
    older one is stale."""
    org = Organization.get(org_id, consistent_read=True)
    recount = org.compliance_recount
    version = compliance.version_of(org)
    if recount is None or recount.state != compliance.RECOUNTING or int(recount.version) != version:
        return
    if handoffs is not None and int(recount.handoffs or 0) != handoffs:
        return
    recounting = _Recount(org_id=org_id, recount=recount, version=version, policy=authenticator_policy.of(org))
    resumable.run(recounting, cursor=recount.cursor, deadline=deadline)


@dataclass(frozen=True)
class _Recount:
    """The recount's pages, progress and end, for :func:`resumable.run`."""

    org_id: str
    recount: ComplianceRecount
    version: int
    policy: authenticator_policy.AuthenticatorPolicy

    def work_page(self, *, after: str | None) -> resumable.Page:
        start = {"org_id": {"S": self.org_id}, "user_id": {"S": after}} if after else None
        results = Member.query(self.org_id, consistent_read=True, page_size=PAGE_SIZE, last_evaluated_key=start)
        page = next(results.page_iter)
        for item in page.get("Items", []):
            member = Member.from_raw_data(item)
            if not _count(member=member, version=self.version, policy=self.policy):
                log.info("organization %s: a newer compliance version took over the recount", self.org_id)
                return resumable.Page(next_cursor=after, taken_over=True)
        last = page.get("LastEvaluatedKey")
        return resumable.Page(next_cursor=last["user_id"]["S"] if last else None)

    def save_progress(self, *, cursor: str | None, handoff: bool) -> bool:
        return _save_progress(org_id=self.org_id, recount=self.recount, cursor=cursor, handoff=handoff)

    def finish(self) -> None:
        _finish(org_id=self.org_id, recount=self.recount)


def _count(*, member: Member, version: int, policy: authenticator_policy.AuthenticatorPolicy) -> bool:
    """Count one member under ``version``; False when the organization moved past it."""
    for _ in range(conditions.MAX_ATTEMPTS):
        standing = conditions.standing_of(member)
        if standing.key_count == 0 or standing.compliance_version == version:
            return True
        held = SecurityKey.by_member.query(member.org_id, SecurityKey.user_id == member.user_id, consistent_read=True)
        figures = compliance.figures_of(policy=policy, keys=held)

        def write_figure() -> None:
            with transaction() as write:
                write.update(
                    Item.MEMBER,
                    Member(member.org_id, member.user_id),
                    actions=[
                        Member.compliant_keys.set(figures.compliant),
                        Member.spared_keys.set(figures.spared),
                        Member.compliance_version.set(version),
                    ],
                    # The keys just read are still the member's: no key transaction came between.
                    condition=Member.user_id.exists()
                    & conditions.number_is(Member.key_changes, standing.key_changes)
                    & conditions.number_is(Member.compliance_version, standing.compliance_version),
                )
                if figures.compliant or figures.counts_as_spared():
                    counter = Organization.members_compliant if figures.compliant else Organization.members_spared
                    write.update(
                        Item.ORG,
                        Organization(member.org_id),
                        actions=[counter.add(1)],
                        condition=compliance.version_condition(version),
                    )
                else:
                    write.condition_check(
                        Item.ORG, Organization, member.org_id, condition=compliance.version_condition(version)
                    )

        try:
            conditions.sent_again_on_conflict(write_figure, org_id=member.org_id)
            return True
        except ConditionsFailed as refused:
            if Item.ORG in refused.labels:
                return False
        # Read as the page was (a query), the one read the stream function's role grants on members.
        again = list(Member.query(member.org_id, Member.user_id == member.user_id, consistent_read=True))
        if not again:
            return True  # offboarded meanwhile: nothing to count
        member = again[0]
    raise ConcurrentChange(f"member {member.user_id}'s keys kept changing during the recount")


def _progress_condition(recount: ComplianceRecount) -> Condition:
    return compliance.version_condition(int(recount.version)) & (
        compliance.RECOUNT_PATH.handoffs == int(recount.handoffs or 0)
    )


def _save_progress(*, org_id: str, recount: ComplianceRecount, cursor: str | None, handoff: bool) -> bool:
    """Record how far the recount got; False if a newer version or invocation took over."""
    actions = [compliance.RECOUNT_PATH.cursor.set(cursor) if cursor else compliance.RECOUNT_PATH.cursor.remove()]
    if handoff:
        actions.append(compliance.RECOUNT_PATH.handoffs.set(int(recount.handoffs or 0) + 1))
    try:
        with transaction() as write:
            write.update(Item.ORG, Organization(org_id), actions=actions, condition=_progress_condition(recount))
    except ConditionsFailed:
        return False
    return True


def _finish(*, org_id: str, recount: ComplianceRecount) -> None:
    try:
        with transaction() as write:
            write.update(
                Item.ORG,
                Organization(org_id),
                actions=[
                    compliance.RECOUNT_PATH.state.set(compliance.DONE),
                    compliance.RECOUNT_PATH.finished_at.set(clock.now()),
                    compliance.RECOUNT_PATH.cursor.remove(),
                ],
                condition=_progress_condition(recount),
            )
    except ConditionsFailed:
        return
    log.info("organization %s: compliance recounted under version %d", org_id, int(recount.version))
