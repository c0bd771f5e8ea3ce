"""Personal settings → MFA: listing, renaming and deleting one's security keys, disabling MFA."""

from __future__ import annotations

import pytest

from chalicelib.base.models import CredentialClaim, Member, SecurityKey
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import enforce_in_table


def _enforce() -> None:
    enforce_in_table("acme")


@pytest.fixture
def bob(api):
    bob = api.login()
    for name in ("Blue key", "Backup key"):
        assert api.add_key(bob, SoftwareAuthenticator(), name=name).status == 201
    return bob


def _key_ids(api, member) -> list[str]:
    return [key["id"] for key in api.call("GET", "/me/mfa/keys", token=member.token).body["keys"]]


def test_the_list_shows_name_id_creation_and_last_use_oldest_first(api, bob):
    reply = api.call("GET", "/me/mfa/keys", token=bob.token)
    assert reply.status == 200
    assert [k["name"] for k in reply.body["keys"]] == ["Blue key", "Backup key"]
    for key in reply.body["keys"]:
        assert set(key) >= {"id", "name", "created_at", "last_used_at"}
        assert key["created_at"].endswith("Z")


def test_the_list_holds_only_the_callers_keys(api, bob):
    carol = api.login(user="carol")
    api.add_key(carol)
    assert len(_key_ids(api, carol)) == 1
    assert len(_key_ids(api, bob)) == 2


def test_rename_trims_and_stores_the_name(api, bob):
    key_id = _key_ids(api, bob)[0]
    reply = api.call("PATCH", f"/me/mfa/keys/{key_id}", token=bob.token, body={"name": "  Office key "})
    assert reply.status == 200
    assert reply.body["key"]["name"] == "Office key"
    assert SecurityKey.get("acme", key_id).name == "Office key"


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "tab\tinside", "bell\x07", 42, None])
def test_rename_refuses_a_bad_name(api, bob, name):
    key_id = _key_ids(api, bob)[0]
    reply = api.call("PATCH", f"/me/mfa/keys/{key_id}", token=bob.token, body={"name": name})
    assert (reply.status, reply.code) == (400, "InvalidKeyName")
    assert SecurityKey.get("acme", key_id).name == "Blue key"


def test_rename_refuses_other_fields(api, bob):
    key_id = _key_ids(api, bob)[0]
    reply = api.call(
        "PATCH", f"/me/mfa/keys/{key_id}", token=bob.token, body={"name": "x", "user_id": "carol", "sign_count": 0}
    )
    assert (reply.status, reply.code) == (400, "MalformedRequest")
    assert SecurityKey.get("acme", key_id).user_id == "bob"


def test_another_members_key_is_not_found_for_rename_or_delete(api, bob):
    carol = api.login(user="carol")
    key_id = _key_ids(api, bob)[0]
    assert api.call("PATCH", f"/me/mfa/keys/{key_id}", token=carol.token, body={"name": "mine"}).code == "KeyNotFound"
    reply = api.call("DELETE", f"/me/mfa/keys/{key_id}", token=carol.token)
    assert (reply.status, reply.code) == (404, "KeyNotFound")
    assert SecurityKey.get("acme", key_id).name == "Blue key"
    assert api.call("DELETE", "/me/mfa/keys/nonsense", token=carol.token).status == 404


def test_delete_removes_the_key_its_claim_and_counts_down(api, bob):
    key_id = _key_ids(api, bob)[0]
    assert api.call("DELETE", f"/me/mfa/keys/{key_id}", token=bob.token).status == 204
    assert _key_ids(api, bob) == [k for k in _key_ids(api, bob) if k != key_id]
    assert len(_key_ids(api, bob)) == 1
    assert Member.get("acme", "bob").key_count == 1
    with pytest.raises(CredentialClaim.DoesNotExist):
        CredentialClaim.get(key_id)
    assert api.call("DELETE", f"/me/mfa/keys/{key_id}", token=bob.token).status == 404


def test_a_deleted_credential_can_be_registered_again(api):
    bob = api.login()
    authenticator = SoftwareAuthenticator()
    api.add_key(bob, authenticator)
    api.call("DELETE", f"/me/mfa/keys/{_key_ids(api, bob)[0]}", token=bob.token)
    assert api.add_key(bob, authenticator).status == 201


def test_without_enforcement_the_last_key_can_be_deleted(api, bob):
    for key_id in _key_ids(api, bob):
        assert api.call("DELETE", f"/me/mfa/keys/{key_id}", token=bob.token).status == 204
    assert Member.get("acme", "bob").key_count == 0
    assert api.login().state == "active"


def test_under_enforcement_the_last_key_stays(api, bob):
    _enforce()
    # Signed in with the key that stays: deleting the key a session proved lapses its proof.
    bob = api.mfa_login(org="acme", user="bob", authenticator=bob.authenticators[-1])
    first, last = _key_ids(api, bob)

    assert api.call("DELETE", f"/me/mfa/keys/{first}", token=bob.token).status == 204
    reply = api.call("DELETE", f"/me/mfa/keys/{last}", token=bob.token)

    assert (reply.status, reply.code) == (409, "LastKeyRequired")
    assert _key_ids(api, bob) == [last]
    assert Member.get("acme", "bob").key_count == 1


def test_disable_mfa_deletes_every_key(api, bob):
    reply = api.call("DELETE", "/me/mfa", token=bob.token)
    assert reply.status == 204
    assert list(SecurityKey.scan(consistent_read=True)) == []
    assert list(CredentialClaim.scan(consistent_read=True)) == []
    assert api.call("GET", "/me", token=bob.token).body["mfa"] == {
        "enabled": False,
        "key_count": 0,
        "registration_due_at": None,
        "enrollment_code_required": False,
    }


def test_disable_mfa_is_refused_under_enforcement(api, bob):
    _enforce()
    bob = api.mfa_login(org="acme", user="bob", authenticator=bob.authenticators[0])
    reply = api.call("DELETE", "/me/mfa", token=bob.token)
    assert (reply.status, reply.code) == (409, "LastKeyRequired")
    assert len(list(SecurityKey.scan(consistent_read=True))) == 2
