"""A member's last sign-in, kept on their own activity item (MemberActivity, keyed per member)
rather than on the member item the organization's partition holds: what an admin sees of it, the
members stored before it (their time stays on the member item until they sign in), offboarding,
and a login racing an offboarding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.access import identity, joining
from chalicelib.access.sessions import resolve
from chalicelib.base import clock
from chalicelib.base.models import Member, MemberActivity, Session, member_key
from chalicelib.org import offboarding

OLD_SIGN_IN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _activity(user: str, org: str = "acme") -> MemberActivity | None:
    try:
        return MemberActivity.get(member_key(org, user), consistent_read=True)
    except MemberActivity.DoesNotExist:
        return None


def _shown(api, admin, user: str) -> dict[str, str | None]:
    """bob's last sign-in as each admin view shows it: the members list, the member's page (a
    search for their ID), the coverage bucket and the enforcement preview."""
    everyone = api.call("GET", "/org/members", token=admin.token)
    page = api.call("GET", f"/org/members?search={user}&limit=1", token=admin.token)
    bucket = api.call("GET", "/org/members?mfa=none", token=admin.token)
    preview = api.call("GET", "/org/mfa/preview", token=admin.token)
    for reply in (everyone, page, bucket, preview):
        assert reply.status == 200, reply.body
    return {
        "members": next(m["last_login_at"] for m in everyone.body["members"] if m["id"] == user),
        "page": next(m["last_login_at"] for m in page.body["members"] if m["id"] == user),
        "bucket": next(m["last_login_at"] for m in bucket.body["members"] if m["id"] == user),
        "preview": next(m["last_login_at"] for m in preview.body["members_without_key_first_page"] if m["id"] == user),
    }


def _later(monkeypatch, minutes: int) -> datetime:
    """keyward's clock moved ``minutes`` ahead (within the admin's idle timeout)."""
    moment = datetime.now(UTC) + timedelta(minutes=minutes)
    monkeypatch.setattr(clock, "now", lambda: moment)
    return moment


def _sessions_of(user: str) -> list[Session]:
    return [session for session in Session.scan(consistent_read=True) if session.user_id == user]


def test_the_last_sign_in_an_admin_sees_is_the_members_latest_login(api, admin, monkeypatch):
    api.login(user="bob")
    first = _activity("bob")
    assert first is not None
    assert set(_shown(api, admin, "bob").values()) == {clock.iso(first.last_login_at)}

    later = _later(monkeypatch, minutes=20)
    api.login(user="bob")

    stored = _activity("bob")
    assert stored is not None and stored.last_login_at == later
    assert stored.member_created_at == Member.get("acme", "bob", consistent_read=True).created_at
    assert set(_shown(api, admin, "bob").values()) == {clock.iso(later)}
    # The login wrote its time on the activity item only.
    assert Member.get("acme", "bob", consistent_read=True).last_login_at is None


def test_a_changed_profile_claim_is_still_written_on_the_member(api):
    api.login(user="bob")
    reply = api.login_reply(user="bob", name="Robert", email="robert@acme.example")

    assert reply.status == 200, reply.body
    stored = Member.get("acme", "bob", consistent_read=True)
    assert (stored.name, stored.email) == ("Robert", "robert@acme.example")


def test_a_member_who_has_not_signed_in_since_shows_the_time_stored_on_them(api, admin, monkeypatch):
    api.login(user="bob")
    # bob as stored before sign-ins had their own item: the time on the member, no activity item.
    MemberActivity(member_key("acme", "bob")).delete()
    Member("acme", "bob").update(actions=[Member.last_login_at.set(OLD_SIGN_IN)])

    assert set(_shown(api, admin, "bob").values()) == {clock.iso(OLD_SIGN_IN)}

    later = _later(monkeypatch, minutes=20)
    assert api.login_reply(user="bob").status == 200

    stored = _activity("bob")
    assert stored is not None and stored.last_login_at == later
    assert set(_shown(api, admin, "bob").values()) == {clock.iso(later)}


def test_an_activity_item_of_an_earlier_member_of_the_same_id_is_not_shown(api, admin):
    api.login(user="bob")
    # An activity item naming another creation of bob (one no offboarding removed, say).
    MemberActivity(
        member_key("acme", "bob"), member_created_at=OLD_SIGN_IN - timedelta(days=1), last_login_at=OLD_SIGN_IN
    ).save()

    shown = _shown(api, admin, "bob")

    assert clock.iso(OLD_SIGN_IN) not in shown.values()
    assert set(shown.values()) == {None}  # bob's own time is on the item he no longer has


def test_offboarding_deletes_the_activity_item_and_a_returning_user_starts_a_new_one(api, admin):
    api.login(user="bob")
    assert _activity("bob") is not None

    assert api.call("DELETE", "/org/members/bob", token=admin.token).status == 204

    assert _activity("bob") is None
    api.login(user="bob")
    stored = _activity("bob")
    assert stored is not None
    assert stored.member_created_at == Member.get("acme", "bob", consistent_read=True).created_at


@pytest.mark.parametrize("activity", ["recorded", "stored-before-activity"])
def test_a_member_offboarded_during_their_login_is_left_without_a_session(api, admin, monkeypatch, activity):
    """Offboarding lands between the login's read of bob and its transaction: the login is
    refused and leaves nothing of bob behind, whether his activity item was there (its condition
    refuses) or not yet (the member item's condition does)."""
    api.login(user="bob")
    if activity == "stored-before-activity":
        MemberActivity(member_key("acme", "bob")).delete()
    admin_caller = resolve(authorization=f"Bearer {admin.token}")
    read_member = joining.returning

    def offboarded_after_the_read(**arguments):
        update = read_member(**arguments)
        offboarding.offboard(caller=admin_caller, user_id="bob")
        return update

    monkeypatch.setattr(joining, "returning", offboarded_after_the_read)
    refused = api.login_reply(user="bob")

    assert (refused.status, refused.code) == (401, "InvalidIdToken")
    assert _sessions_of("bob") == []
    assert _activity("bob") is None
    with pytest.raises(Member.DoesNotExist):
        Member.get("acme", "bob", consistent_read=True)


def test_a_member_offboarded_and_created_again_during_their_login_keeps_only_the_new_login(api, admin, monkeypatch):
    """Between the login's read of bob and its transaction, bob is offboarded and a first login
    creates him again: the older login is refused, rather than start a session of the member it
    read under the new one."""
    api.login(user="bob")
    admin_caller = resolve(authorization=f"Bearer {admin.token}")
    token = api.idp.mint(org="acme", user="bob", admin=False, name="Bob", email="bob@acme.example")
    bob = identity.verify_id_token(id_token=token)
    read_member = joining.returning
    client = admin_caller.client

    def offboarded_and_back(**arguments):
        update = read_member(**arguments)
        monkeypatch.setattr(joining, "returning", read_member)
        offboarding.offboard(caller=admin_caller, user_id="bob")
        identity.sign_in_as(identity=bob, client=client)
        return update

    monkeypatch.setattr(joining, "returning", offboarded_and_back)
    refused = api.login_reply(user="bob")

    assert (refused.status, refused.code) == (401, "InvalidIdToken")
    member = Member.get("acme", "bob", consistent_read=True)
    [session] = _sessions_of("bob")
    assert session.created_at >= member.created_at
    stored = _activity("bob")
    assert stored is not None and stored.member_created_at == member.created_at


def test_a_first_login_that_never_finds_nor_creates_its_member_is_a_conflict_not_a_crash(api, monkeypatch):
    """Each time this login tries to create the member, another first login has just done so, and
    each time it reads again the member is gone (offboarded): it asks the person to sign in again."""
    monkeypatch.setattr(joining, "join", lambda **_: None)

    reply = api.login_reply(user="bob")

    assert (reply.status, reply.code) == (409, "ConcurrentChange")
    assert Member.count("acme", Member.user_id == "bob") == 0
    assert not [s for s in Session.scan() if s.user_id == "bob"]
