"""Admins without a key in the enforcement preview: counted on the organization by the
transactions that create members, change an admin flag at login, cross a key count over zero and
offboard, and listed from a sparse index, never from every member."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from chalicelib.access import identity, sessions
from chalicelib.base.models import Member, Organization
from chalicelib.counters import coverage
from chalicelib.keys import registration
from tests.support.authenticator import SoftwareAuthenticator


def _admin_counters(org_id: str = "acme") -> tuple[int, int]:
    org = Organization.get(org_id, consistent_read=True)
    return int(org.admins_total or 0), int(org.admins_with_key or 0)


def _preview(api, token: str) -> dict:
    reply = api.call("GET", "/org/mfa/preview", token=token)
    assert reply.status == 200, reply.body
    return reply.body


def _listed(body: dict) -> list[str]:
    return [member["id"] for member in body["admins_without_key_first_page"]]


def test_the_preview_names_the_admins_without_a_key(api):
    reply = api.login_reply(user="alice", admin=True, name="Alice Admin", email="alice@acme.example")
    assert reply.status == 200, reply.body
    assert api.login_reply(user="bob", admin=True, name="Bob Admin", email="bob@acme.example").status == 200
    api.login(user="carol")
    alice = api.login(user="alice", admin=True)
    body = _preview(api, alice.token)
    assert (body["admins_total"], body["admins_without_key"]) == (2, 2)
    assert [(m["id"], m["name"], m["email"], m["admin"]) for m in body["admins_without_key_first_page"]] == [
        ("alice", "Alice", "alice@acme.example", True),
        ("bob", "Bob Admin", "bob@acme.example", True),
    ]
    # The members list shows a member the same way.
    listed = {m["id"]: m for m in api.call("GET", "/org/members", token=alice.token).body["members"]}
    assert body["admins_without_key_first_page"][0] == listed["alice"]

    assert api.add_key(alice, SoftwareAuthenticator()).status == 201
    body = _preview(api, alice.token)
    assert (body["admins_total"], body["admins_without_key"], _listed(body)) == (2, 1, ["bob"])
    assert _admin_counters() == (2, 1)


def test_an_admin_flag_changed_at_login_moves_the_counters_and_the_index(api):
    alice = api.login(user="alice", admin=True)
    assert api.add_key(alice, SoftwareAuthenticator()).status == 201
    bob = api.login(user="bob")
    assert api.add_key(bob, SoftwareAuthenticator()).status == 201
    carol = api.login(user="carol")
    assert _admin_counters() == (1, 1)

    # The IdP makes bob (with a key) and carol (without) admins, then takes alice's role away.
    api.login(user="bob", admin=True)
    api.login(user="carol", admin=True)
    assert _admin_counters() == (3, 2)
    assert Member.get("acme", "carol", consistent_read=True).admin_without_key == "acme"
    api.login(user="alice", admin=False)
    assert _admin_counters() == (2, 1)
    admin = api.login(user="carol", admin=True)
    assert _listed(_preview(api, admin.token)) == ["carol"]
    api.login(user="carol", admin=False)
    assert _admin_counters() == (1, 1)
    assert Member.get("acme", "carol", consistent_read=True).admin_without_key is None
    assert carol.token  # carol's earlier session is not what this test is about


def test_an_admins_last_key_and_offboarding_move_the_counters(api):
    alice = api.login(user="alice", admin=True)
    assert api.add_key(alice, SoftwareAuthenticator()).status == 201
    bob = api.login(user="bob", admin=True)
    assert api.add_key(bob, SoftwareAuthenticator()).status == 201
    assert _admin_counters() == (2, 2)
    assert api.call("DELETE", "/me/mfa", token=bob.token).status == 204
    assert _admin_counters() == (2, 1)
    assert _listed(_preview(api, alice.token)) == ["bob"]
    # Offboarding needs a fresh key check; alice's registration was one.
    assert api.call("DELETE", "/org/members/bob", token=alice.token).status == 204
    assert _admin_counters() == (1, 1)
    assert _listed(_preview(api, alice.token)) == []
    [key] = api.call("GET", "/me/mfa/keys", token=alice.token).body["keys"]
    assert api.call("DELETE", f"/me/mfa/keys/{key['id']}", token=alice.token).status == 204
    assert _admin_counters() == (1, 0)


def test_the_preview_reads_the_counters_and_one_index_page(api):
    alice = api.login(user="alice", admin=True)
    # What the counters say is what the preview shows: it does not count members itself.
    Organization("acme").update(actions=[Organization.admins_total.set(500), Organization.admins_with_key.set(100)])
    body = _preview(api, alice.token)
    assert (body["admins_total"], body["admins_without_key"], _listed(body)) == (500, 400, ["alice"])


def test_recount_repairs_the_admin_counters_and_entries(api):
    alice = api.login(user="alice", admin=True)
    assert api.add_key(alice, SoftwareAuthenticator()).status == 201
    api.login(user="bob", admin=True)
    api.login(user="carol")
    # As an organization from before admins were counted.
    Organization("acme").update(actions=[Organization.admins_total.remove(), Organization.admins_with_key.remove()])
    Member("acme", "bob").update(actions=[Member.admin_without_key.remove()])
    counted = coverage.recount(org_id="acme")
    assert (counted.admins_total, counted.admins_with_key) == (2, 1)
    assert _admin_counters() == (2, 1)
    assert _listed(_preview(api, alice.token)) == ["bob"]


def test_parallel_first_keys_and_admin_changes_are_all_counted(api):
    """Admins registering first keys, members promoted and demoted at login, all at once on one
    organization item: the counters end as the members are. (The domain functions run in the
    threads: Chalice's test client swaps os.environ per request and cannot run in parallel.)"""
    admins = [api.login(user=f"admin{n}", admin=True) for n in range(8)]
    members = [api.login(user=f"member{n}") for n in range(8)]
    for member in members[:4]:
        assert api.add_key(member, SoftwareAuthenticator()).status == 201

    def register(member) -> object:
        options = api.registration_options(member).body
        submission = registration.parse_submission(
            challenge_id=options["challenge_id"],
            name="First",
            credential=SoftwareAuthenticator().register(options["publicKey"]),
        )
        return lambda: registration.register(
            caller=sessions.resolve(
                authorization=f"Bearer {member.token}", also=registration.submission_reads(submission)
            ),
            submission=submission,
        )

    def sign_in(user: str, *, admin: bool) -> object:
        token = api.idp.mint(org="acme", user=user, admin=admin, name=user.title(), email=f"{user}@acme.example")
        return lambda: identity.record_sign_in(identity=identity.verify_id_token(id_token=token))

    calls = [register(admin) for admin in admins]
    calls += [sign_in(f"member{n}", admin=True) for n in range(8)]
    calls += [sign_in(f"admin{n}", admin=False) for n in range(0, 8, 4)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda call: call(), calls))
    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)]

    stored = list(Member.query("acme", consistent_read=True))
    admins_now = [m for m in stored if m.admin]
    assert len(admins_now) == 14 and sum(1 for m in stored if m.key_count > 0) == 12
    assert _admin_counters() == (len(admins_now), sum(1 for m in admins_now if m.key_count > 0))
    without = sorted(m.user_id for m in admins_now if m.key_count == 0)
    assert sorted(m.user_id for m in stored if m.admin_without_key == "acme") == without
