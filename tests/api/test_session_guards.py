"""The session rules' guards, each made to matter: the retry of a cancelled transactional read,
the Bearer scheme, the expiry instant, the refresh of last_seen_at under a short idle timeout,
logout's token condition against a stale caller, and the owner conditions of ending one's own
session and of a member's sessions, with fixed IDs on both sides; the token's shape, a session item
naming another user, the user agent's length, a taken session ID, the idle instant, who a
backup-credentials session is, the member ID's length, which sessions a first key spares, another
organization's backup credentials, and ending more sessions than one transaction holds; one read
per request, what a session stores, the refresh of last_seen_at, a session deleted while its request
runs, which ended sessions an admin's ending counts, and user IDs of every length in a token."""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError
from pynamodb.exceptions import TransactGetError

from chalicelib.access import sessions
from chalicelib.base import clock
from chalicelib.base.config import load
from chalicelib.base.errors import InvalidToken, MemberNotFound
from chalicelib.base.models import Member, Session
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator


def _session_of(member) -> Session:
    return Session.get(member.token.split(".")[3], consistent_read=True)


# --- the retry of a cancelled transactional read -------------------------------------------------


@pytest.fixture
def cancelled_reads(monkeypatch):
    """Make the next ``n`` transactional reads of sessions.resolve cancelled, as DynamoDB cancels
    one that meets a transaction writing the same item."""
    left = {"n": 0}

    class CancelledFirst(sessions.TransactGet):
        def _commit(self):
            if left["n"] > 0:
                left["n"] -= 1
                # Built at run time, as botocore parses it from a reply: not the interned literal.
                code = "".join(["TransactionCanceled", "Exception"])
                cause = ClientError({"Error": {"Code": code, "Message": "conflict"}}, "TransactGetItems")
                raise TransactGetError("Failed to get transaction items", cause=cause)
            return super()._commit()

    monkeypatch.setattr(sessions, "TransactGet", CancelledFirst)

    def cancel(n: int) -> dict[str, int]:
        left["n"] = n
        return left

    return cancel


def test_one_cancelled_read_is_retried_and_the_request_answers(api, cancelled_reads):
    bob = api.login(user="bob")
    left = cancelled_reads(1)

    reply = api.call("GET", "/me", token=bob.token)

    assert reply.status == 200, reply.body
    assert left["n"] == 0


def test_two_cancelled_reads_are_a_503_not_a_refusal_of_the_token(api, cancelled_reads):
    bob = api.login(user="bob")
    cancelled_reads(2)

    reply = api.call("GET", "/me", token=bob.token)

    assert (reply.status, reply.code) == (503, "StorageUnavailable"), reply.body
    assert api.call("GET", "/me", token=bob.token).status == 200  # the session is untouched


# Sorting before and after TransactionCanceledException.
@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ValidationException"])
def test_a_read_refused_for_another_reason_is_not_retried(api, monkeypatch, code):
    bob = api.login(user="bob")
    attempts = []

    class Throttled(sessions.TransactGet):
        def _commit(self):
            attempts.append(1)
            cause = ClientError({"Error": {"Code": code, "Message": "refused"}}, "TransactGetItems")
            raise TransactGetError("Failed to get transaction items", cause=cause)

    monkeypatch.setattr(sessions, "TransactGet", Throttled)

    reply = api.call("GET", "/me", token=bob.token)

    assert (reply.status, reply.code) == (503, "StorageUnavailable")
    assert len(attempts) == 1


# --- the Bearer scheme ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearerx", "MAC", "Beare", ""])
def test_a_valid_token_under_another_scheme_is_refused(api, scheme):
    bob = api.login(user="bob")
    header = f"{scheme} {bob.token}" if scheme else bob.token

    reply = api.call("GET", "/me", headers={"authorization": header})

    assert (reply.status, reply.code) == (401, "MissingToken"), reply.body


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])  # RFC 9110: schemes are case-insensitive
def test_the_bearer_scheme_in_any_case_is_accepted(api, scheme):
    bob = api.login(user="bob")

    reply = api.call("GET", "/me", headers={"authorization": f"{scheme} {bob.token}"})

    assert reply.status == 200, reply.body


# --- the expiry instant --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offset,status", [(timedelta(microseconds=-1), 200), (timedelta(0), 401), (timedelta(microseconds=1), 401)]
)
def test_a_session_ends_at_the_instant_it_expires(api, monkeypatch, offset, status):
    bob = api.login(user="bob")
    session = _session_of(bob)
    expires_at = session.expires_at
    # In use until then: the idle timeout is not what ends it.
    session.update(actions=[Session.last_seen_at.set(expires_at - timedelta(minutes=1))])
    monkeypatch.setattr(clock, "now", lambda: expires_at + offset)

    reply = api.call("GET", "/me", token=bob.token)

    assert reply.status == status, reply.body
    if status == 401:
        assert reply.code == "SessionExpired"


# --- how often last_seen_at is refreshed ----------------------------------------------------------


@pytest.mark.parametrize("after,refreshed", [(timedelta(seconds=29), False), (timedelta(seconds=30), True)])
def test_under_a_short_idle_timeout_last_seen_is_refreshed_every_quarter_of_it(api, monkeypatch, after, refreshed):
    short = load({"KEYWARD_SESSION_IDLE_SECONDS": "120"})
    monkeypatch.setattr(sessions, "settings", lambda: short)
    bob = api.login(user="bob")
    seen_at_login = _session_of(bob).last_seen_at
    monkeypatch.setattr(clock, "now", lambda: seen_at_login + after)

    assert api.call("GET", "/me", token=bob.token).status == 200

    assert _session_of(bob).last_seen_at == (seen_at_login + after if refreshed else seen_at_login)


# --- logout against a stale caller ---------------------------------------------------------------


@pytest.mark.parametrize("token_hash_meanwhile", ["0" * 64, "f" * 64])
def test_logout_with_a_token_that_was_rotated_meanwhile_ends_nothing(api, token_hash_meanwhile):
    bob = api.login(user="bob")
    stale = sessions.resolve(authorization=f"Bearer {bob.token}")
    # Meanwhile the session moved on to a new token (an MFA verify of the same session, say).
    Session(stale.session.session_id).update(actions=[Session.token_hash.set(token_hash_meanwhile)])

    with pytest.raises(InvalidToken):
        sessions.end(caller=stale)

    assert _session_of(bob).token_hash == token_hash_meanwhile


def test_logout_with_the_current_token_ends_the_session(api):
    bob = api.login(user="bob")

    sessions.end(caller=sessions.resolve(authorization=f"Bearer {bob.token}"))

    with pytest.raises(Session.DoesNotExist):
        _session_of(bob)


# --- ending one's own session: only one's own, on both sides of the owner's ID -------------------


@pytest.mark.parametrize("other", ["user-a", "user-z"])
def test_a_member_cannot_end_a_session_of_another_member_whatever_the_order_of_their_ids(api, other):
    mine = api.login(user="user-m")
    theirs = api.login(user=other)

    reply = api.call("DELETE", f"/me/sessions/{theirs.token.split('.')[3]}", token=mine.token)

    assert (reply.status, reply.code) == (404, "SessionNotFound"), reply.body
    assert api.call("GET", "/me", token=theirs.token).status == 200


# --- a member's sessions are exactly theirs: the member index's key condition, both sides ---------


def test_a_members_sessions_are_listed_without_those_of_members_whose_ids_sort_around_theirs(api):
    below, mine, above = api.login(user="user-a"), api.login(user="user-m"), api.login(user="user-z")

    listed = api.call("GET", "/me/sessions", token=mine.token)

    assert listed.status == 200
    assert [session["id"] for session in listed.body["sessions"]] == [mine.token.split(".")[3]]
    for other in (below, above):
        assert api.call("GET", "/me", token=other.token).status == 200


def test_an_admin_ending_a_members_sessions_ends_none_of_the_members_around_them(api):
    admin = api.login(user="admin", admin=True)
    below, member, above = api.login(user="user-a"), api.login(user="user-m"), api.login(user="user-z")

    reply = api.call("DELETE", "/org/members/user-m/sessions", token=admin.token)

    assert reply.status in (200, 204), reply.body
    assert api.call("GET", "/me", token=member.token).status == 401
    for other in (below, above):
        assert api.call("GET", "/me", token=other.token).status == 200


# --- the token's shape ----------------------------------------------------------------------------


def test_a_token_of_the_right_version_with_too_few_or_too_many_parts_is_refused(api):
    bob = api.login(user="bob")
    parts = bob.token.split(".")
    for token in (".".join(parts[:3]), ".".join(parts[:4]), bob.token + ".extra"):
        reply = api.call("GET", "/me", token=token)
        assert (reply.status, reply.code) == (401, "InvalidToken"), token


@pytest.mark.parametrize("stored_user", ["bob-a", "bob-z"])  # sorting before and after "bob-m"
def test_a_session_item_naming_another_user_than_its_token_is_refused(api, stored_user):
    """An operator's edit of a session item: the token still hashes right, the user no longer matches."""
    bob = api.login(user="bob-m")
    Session(bob.token.split(".")[3]).update(actions=[Session.user_id.set(stored_user)])

    reply = api.call("GET", "/me", token=bob.token)

    assert (reply.status, reply.code) == (401, "InvalidToken")


@pytest.mark.parametrize(("length", "stored"), [(512, 512), (513, 512)])
def test_a_sessions_user_agent_is_kept_up_to_512_characters(api, length, stored):
    id_token = api.idp.mint(org="acme", user="bob", admin=False, name="Bob", email="bob@acme.example")
    reply = api.call("POST", "/auth/login", headers={"user-agent": "a" * length}, body={"id_token": id_token})
    assert reply.status == 200, reply.body

    assert Session.get(reply.body["token"].split(".")[3], consistent_read=True).user_agent == "a" * stored


def test_a_session_id_that_is_taken_already_starts_no_session(api, monkeypatch):
    from chalicelib.access import lifecycle

    first = api.login(user="bob")
    taken = first.token.split(".")[3]
    monkeypatch.setattr(lifecycle, "new_session_id", lambda started: taken)

    reply = api.login_reply(user="carol")

    assert (reply.status, reply.code) == (401, "InvalidToken")
    assert reply.body["Message"] == "Could not start a session; try again."
    assert _session_of(first).user_id == "bob"


# --- the idle instant -----------------------------------------------------------------------------


@pytest.mark.parametrize("offset,code", [(timedelta(microseconds=-1), None), (timedelta(0), "SessionIdle")])
def test_a_session_ends_at_the_instant_it_has_been_idle_for_the_timeout(api, monkeypatch, offset, code):
    bob = api.login(user="bob")
    last_seen = _session_of(bob).last_seen_at
    monkeypatch.setattr(clock, "now", lambda: last_seen + timedelta(seconds=3600) + offset)

    reply = api.call("GET", "/me", token=bob.token)

    assert (reply.status, reply.code) == ((200, None) if code is None else (401, code))


# --- who a backup-credentials session is --------------------------------------------------------


def test_a_backup_credentials_session_is_an_admin_holding_no_key(api):
    alice = api.login(user="alice", admin=True)
    key = SoftwareAuthenticator()
    assert api.add_key(alice, key).status == 201
    alice = api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)
    created = api.call("POST", "/org/backup-credentials", token=alice.token).body
    signed_in = api.call("POST", "/auth/backup-login", body={"key_id": created["key_id"], "secret": created["secret"]})
    assert signed_in.status == 200, signed_in.body
    token = signed_in.body["token"]

    me = api.call("GET", "/me", token=token).body
    assert (me["user"]["admin"], me["mfa"]["enabled"], me["mfa"]["key_count"]) == (True, False, 0)
    assert api.call("GET", "/org/mfa", token=token).status == 200


# --- the member ID's length -----------------------------------------------------------------------


@pytest.mark.parametrize(("length", "status"), [(1, 204), (255, 204), (256, 404)])
def test_an_admin_ends_the_sessions_of_a_member_whose_id_is_up_to_255_characters(api, length, status):
    admin = api.login(user="admin", admin=True)
    user_id = "u" * length
    Member("acme", user_id, name="Long", email="long@acme.example", key_count=0, created_at=clock.now()).save()

    reply = api.call("DELETE", f"/org/members/{user_id}/sessions", token=admin.token)

    assert reply.status == status, reply.body


def test_an_empty_member_id_is_no_member(api):
    admin = api.login(user="admin", admin=True)
    with pytest.raises(MemberNotFound):
        sessions.end_member_sessions(caller=sessions.resolve(authorization=f"Bearer {admin.token}"), user_id="")


# --- a first key ends only the sessions that never passed a key check -----------------------------


def test_a_session_whose_registered_key_is_gone_ends_with_a_later_first_key(api):
    """Registering a key is the session's proof only while the member holds that key: a session
    that registered a throwaway key and deleted it again knew no more than the IdP password, and
    ends when the member's real first key comes, like a session that never proved a key."""
    registered = api.login(user="bob")
    assert api.add_key(registered).status == 201
    [key_id] = [key["id"] for key in api.call("GET", "/me/mfa/keys", token=registered.token).body["keys"]]
    assert api.call("DELETE", f"/me/mfa/keys/{key_id}", token=registered.token).status == 204
    never_checked = api.login(user="bob")
    later = api.login(user="bob")

    assert api.add_key(later).status == 201

    assert api.call("GET", "/me", token=registered.token).code == "SessionEndedByNewKey"
    assert api.call("GET", "/me", token=never_checked.token).code == "SessionEndedByNewKey"
    assert api.call("GET", "/me", token=later.token).status == 200


# --- backup credentials are a member of their own organization only -------------------------------


@pytest.mark.parametrize("other_org", ["org-a", "org-z"])  # sorting before and after org-m
def test_an_admin_cannot_end_the_sessions_of_another_organizations_backup_credentials(api, other_org):
    admin = api.login(org="org-m", user="admin", admin=True)
    theirs = api.login(org=other_org, user="admin", admin=True)
    created = api.call("POST", "/org/backup-credentials", token=theirs.token).body
    signed_in = api.call("POST", "/auth/backup-login", body={"key_id": created["key_id"], "secret": created["secret"]})
    assert signed_in.status == 200, signed_in.body

    reply = api.call("DELETE", f"/org/members/backup:{created['key_id']}/sessions", token=admin.token)

    assert (reply.status, reply.code) == (404, "MemberNotFound")
    assert api.call("GET", "/me", token=signed_in.body["token"]).status == 200


# --- ending many sessions: 99 per transaction, beside the audit event that records them ----------


def test_an_admin_ends_150_sessions_of_a_member_in_transactions_of_97_each_recorded(api):

    admin = api.login(user="admin", admin=True)
    api.login(user="bob")
    now = clock.now()
    with Session.batch_write() as batch:
        for number in range(149):
            batch.save(
                Session.of_member(
                    f"s{number:04d}",
                    org_id="acme",
                    token_hash="x",
                    state="active",
                    user_id="bob",
                    created_at=now,
                    expires_at=now + timedelta(hours=1),
                    ttl=now + timedelta(days=1),
                )
            )

    assert api.call("DELETE", "/org/members/bob/sessions", token=admin.token).status == 204

    assert sessions.sessions_of(org_id="acme", user_id="bob") == []
    recorded = [
        e.details.as_dict()["sessions_ended"] for e in logged_events("acme") if e.action == "member.sessions_ended"
    ]
    assert sorted(recorded, reverse=True) == [97, 53]


# --- one read per request -------------------------------------------------------------------------


@pytest.fixture
def transactional_reads(monkeypatch) -> list[int]:
    """Each transactional read sessions.resolve makes, as it is made."""
    reads: list[int] = []

    class Counted(sessions.TransactGet):
        def _commit(self):
            reads.append(1)
            return super()._commit()

    monkeypatch.setattr(sessions, "TransactGet", Counted)
    return reads


def test_a_request_reads_its_session_in_one_transactional_read(api, transactional_reads):
    bob = api.login(user="bob")
    transactional_reads.clear()

    assert api.call("GET", "/me", token=bob.token).status == 200
    assert len(transactional_reads) == 1


# --- what a session stores ------------------------------------------------------------------------


def test_a_tokens_secret_is_32_random_bytes_and_the_session_is_kept_a_day_past_its_expiry(api):
    import base64

    bob = api.login(user="bob")
    secret = bob.token.split(".")[4]
    stored = _session_of(bob)

    assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) == 32
    assert stored.ttl == (stored.expires_at + timedelta(days=1)).replace(microsecond=0)  # TTL is in whole seconds


@pytest.mark.parametrize("empty", [1, 2])  # the organization's part, the user's part
def test_a_token_naming_no_organization_or_no_user_is_refused_before_any_read(api, transactional_reads, empty):
    """DynamoDB refuses an empty key value, so such a read would be a 503, not a 401."""
    parts = api.login(user="bob").token.split(".")
    parts[empty] = ""
    transactional_reads.clear()

    reply = api.call("GET", "/me", token=".".join(parts))

    assert (reply.status, reply.code) == (401, "InvalidToken")
    assert transactional_reads == []


# --- the refresh of last_seen_at at the default idle timeout ------------------------------------


@pytest.mark.parametrize(
    "after,refreshed", [(timedelta(minutes=5) - timedelta(microseconds=1), False), (timedelta(minutes=5), True)]
)
def test_last_seen_is_refreshed_once_it_is_five_minutes_old(api, monkeypatch, after, refreshed):
    bob = api.login(user="bob")
    seen_at_login = _session_of(bob).last_seen_at
    monkeypatch.setattr(clock, "now", lambda: seen_at_login + after)

    assert api.call("GET", "/me", token=bob.token).status == 200

    assert _session_of(bob).last_seen_at == (seen_at_login + after if refreshed else seen_at_login)


def test_a_session_deleted_while_its_request_runs_is_not_brought_back_by_the_activity_note(api, monkeypatch):
    from chalicelib.access import grace

    bob = api.login(user="bob")
    later = _session_of(bob).last_seen_at + timedelta(minutes=10)  # due for a refresh of last_seen_at
    monkeypatch.setattr(clock, "now", lambda: later)
    apply_deadline = grace.apply_deadline

    def logged_out_meanwhile(**arguments):
        Session(bob.token.split(".")[3]).delete()
        return apply_deadline(**arguments)

    monkeypatch.setattr(grace, "apply_deadline", logged_out_meanwhile)

    assert api.call("GET", "/me", token=bob.token).status == 200  # it was live when the request read it
    with pytest.raises(Session.DoesNotExist):
        _session_of(bob)


# --- a backup-credentials session item in the wrong organization (an operator's edit) ------------


@pytest.mark.parametrize("credentials_org", ["org-a", "org-z"])  # sorting before and after org-m
def test_a_session_item_of_another_organizations_backup_credentials_is_refused(api, credentials_org):
    from chalicelib.access import lifecycle

    theirs = api.login(org=credentials_org, user="admin", admin=True)
    key_id = api.call("POST", "/org/backup-credentials", token=theirs.token).body["key_id"]
    api.login(org="org-m", user="someone")  # org-m exists
    started = clock.now()
    session = Session.of_member(
        lifecycle.new_session_id(started),
        org_id="org-m",
        state="active",
        user_id=f"backup:{key_id}",
        admin=True,
        created_at=started,
        expires_at=started + timedelta(hours=1),
        last_seen_at=started,
        enforcement_generation=0,
        member_generation=0,
        org_enforced_at_start=False,
        ttl=started + timedelta(days=1),
    )
    token = sessions._new_token(session)
    session.token_hash = sessions._hash(token)
    session.save()

    reply = api.call("GET", "/me", token=token)

    assert (reply.status, reply.code) == (401, "InvalidToken")


# --- ending a member's sessions counts the live ones ---------------------------------------------


@pytest.mark.parametrize("expired_since", [timedelta(0), timedelta(seconds=1)])  # the expiry instant, and after
def test_an_admin_ending_a_members_sessions_records_only_the_live_ones_as_ended(api, monkeypatch, expired_since):

    admin = api.login(user="admin", admin=True)
    live, expired = api.login(user="bob"), api.login(user="bob")
    now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: now)
    Session(expired.token.split(".")[3]).update(actions=[Session.expires_at.set(now - expired_since)])

    assert api.call("DELETE", "/org/members/bob/sessions", token=admin.token).status == 204

    assert api.call("GET", "/me", token=live.token).status == 401
    [recorded] = [e.details.as_dict() for e in logged_events("acme") if e.action == "member.sessions_ended"]
    assert recorded["sessions_ended"] == 1


# --- the token carries IDs of any length ---------------------------------------------------------


def test_a_token_names_users_of_every_id_length_modulo_base64s_blocks(api):
    """The user's part is unpadded base64url; each length (mod 3 bytes, 4 characters, ...) must
    decode back to the same user."""
    for length in range(1, 13):
        member = api.login(user="u" * length)
        reply = api.call("GET", "/me", token=member.token)
        assert reply.status == 200 and reply.body["user"]["id"] == "u" * length, (length, reply.body)
