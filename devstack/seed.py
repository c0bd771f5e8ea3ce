"""The demo organization the local stack starts with: ``acme``, its admin alice and member bob."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from pynamodb.attributes import Attribute
from pynamodb.exceptions import PutError
from pynamodb.models import Model

from chalicelib.base.models import Member, Organization
from chalicelib.base.storage import ConditionsFailed, Item, transaction
from chalicelib.counters import coverage
from chalicelib.counters.coverage import Bucket

DEMO_ORG = "acme"
DEMO_ADMIN = "alice"
DEMO_MEMBER = "bob"


class _DemoMember(NamedTuple):
    user_id: str
    name: str
    email: str
    admin: bool


_DEMO_MEMBERS = (
    _DemoMember(user_id=DEMO_ADMIN, name="Alice Admin", email="alice@acme.example", admin=True),
    _DemoMember(user_id=DEMO_MEMBER, name="Bob Member", email="bob@acme.example", admin=False),
)


def seed_demo_org() -> list[str]:
    """Create the demo organization and its members where missing; never overwrite them.

    Returns what was created, e.g. ``["organization acme", "member acme/alice"]``.
    """
    now = datetime.now(UTC)
    created: list[str] = []
    if _create_if_missing(
        Organization(
            org_id=DEMO_ORG, created_at=now, members_total=0, members_with_key=0, admins_total=0, admins_with_key=0
        ),
        key=Organization.org_id,
    ):
        created.append(f"organization {DEMO_ORG}")
    for demo in _DEMO_MEMBERS:
        member = Member(
            org_id=DEMO_ORG,
            created_at=now,
            key_count=0,
            coverage=coverage.coverage_key(org_id=DEMO_ORG, bucket=Bucket.NONE),
            admin_without_key=coverage.admin_without_key_for(org_id=DEMO_ORG, admin=demo.admin, key_count=0),
            **demo._asdict(),
        )
        try:
            # Counted with its creation, as a first login would.
            with transaction() as write:
                write.save(Item.MEMBER, member, condition=Member.org_id.does_not_exist())
                coverage.add_member(write, org_id=DEMO_ORG, admin=demo.admin)
        except ConditionsFailed:
            continue
        created.append(f"member {DEMO_ORG}/{demo.user_id}")
    return created


def _create_if_missing(item: Model, *, key: Attribute[Any]) -> bool:
    # Conditional, so a re-run keeps whatever keys, sessions or enforcement the demo org gathered.
    try:
        item.save(condition=key.does_not_exist())
    except PutError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True
