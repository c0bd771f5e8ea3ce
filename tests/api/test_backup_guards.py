"""The backup-credential rule's guards, each pinned exactly: the hash's parameters and sizes as
stored, both sides of every length limit, each required field on its own, the organization
boundary of the listing with fixed IDs below and above, and credentials deleted between the
secret's check and the session's start. A guard weakened by one step fails a test here."""

from __future__ import annotations

import base64
import hashlib

import pytest

from chalicelib.access import backup
from chalicelib.base.models import BackupCredential, Organization, Session
from tests.support.authenticator import SoftwareAuthenticator

MALFORMED = (400, "MalformedRequest")
INVALID = (401, "InvalidBackupCredentials")


def _admin(api, *, org: str = "acme", user: str = "alice"):
    signed_in = api.login(org=org, user=user, admin=True)
    key = SoftwareAuthenticator()
    assert api.add_key(signed_in, key).status == 201
    return api.mfa_login(org=org, user=user, authenticator=key, admin=True)


def _create(api, admin) -> dict:
    reply = api.call("POST", "/org/backup-credentials", token=admin.token)
    assert reply.status == 201, reply.body
    return reply.body


def _backup_login(api, key_id: object, secret: object):
    return api.call("POST", "/auth/backup-login", body={"key_id": key_id, "secret": secret})


def test_the_secret_is_32_random_bytes_hashed_with_scrypt_n_2_14_r_8_p_1_and_a_16_byte_salt(api):
    created = _create(api, _admin(api))

    secret = created["secret"]
    assert len(secret) == 43 and len(base64.urlsafe_b64decode(secret + "=")) == 32
    stored = BackupCredential.get(created["key_id"], consistent_read=True)
    assert (stored.scrypt_n, stored.scrypt_r, stored.scrypt_p) == (2**14, 8, 1)
    assert len(stored.salt) == 16
    assert stored.secret_hash == hashlib.scrypt(
        secret.encode(), salt=stored.salt, n=2**14, r=8, p=1, maxmem=2**26, dklen=32
    )


@pytest.mark.parametrize(
    "body",
    [
        {"key_id": "", "secret": "s"},
        {"key_id": "bk_" + "A" * 22, "secret": ""},
        {"key_id": 7, "secret": "s"},
        {"key_id": "bk_" + "A" * 22, "secret": 7},
    ],
    ids=["empty-key-id", "empty-secret", "key-id-not-a-string", "secret-not-a-string"],
)
def test_each_required_field_on_its_own_is_a_malformed_request(api, body):
    reply = _backup_login(api, body["key_id"], body["secret"])

    assert (reply.status, reply.code) == MALFORMED


@pytest.mark.parametrize(
    ("key_id_length", "secret_length", "answer"),
    [
        (64, 43, INVALID),
        (65, 43, MALFORMED),
        (25, 256, INVALID),
        (25, 257, MALFORMED),
    ],
    ids=["key-id-64", "key-id-65", "secret-256", "secret-257"],
)
def test_a_key_id_may_be_64_characters_and_a_secret_256_and_no_more(api, key_id_length, secret_length, answer):
    reply = _backup_login(api, "k" * key_id_length, "s" * secret_length)

    assert (reply.status, reply.code) == answer


@pytest.mark.parametrize("other_org", ["acme-a", "acme-z"])
def test_the_listing_shows_no_other_organizations_credentials_even_if_an_operator_names_them(api, other_org):
    """An operator's edit (or a restored backup) could put another organization's key ID in this
    organization's set; the listing checks each credential's own organization, by equality."""
    admin = _admin(api, org="acme-m")
    own = _create(api, admin)
    theirs = _create(api, _admin(api, org=other_org, user="olga"))
    Organization("acme-m").update(actions=[Organization.backup_key_ids.add({theirs["key_id"]})])

    listed = api.call("GET", "/org/backup-credentials", token=admin.token)

    assert listed.status == 200
    assert [credential["key_id"] for credential in listed.body["backup_credentials"]] == [own["key_id"]]


def test_credentials_deleted_between_the_secrets_check_and_the_session_open_nothing(api, monkeypatch):
    created = _create(api, _admin(api))
    read = backup._credential_or_none

    def read_then_deleted_meanwhile(key_id: str) -> BackupCredential | None:
        credential = read(key_id)
        BackupCredential(key_id).delete()
        return credential

    monkeypatch.setattr(backup, "_credential_or_none", read_then_deleted_meanwhile)
    sessions_before = Session.count()

    reply = _backup_login(api, created["key_id"], created["secret"])

    assert (reply.status, reply.code) == INVALID
    assert Session.count() == sessions_before


@pytest.mark.parametrize("other_org", ["acme-a", "acme-z"])
def test_an_admin_cannot_delete_another_organizations_credentials_whatever_the_order_of_their_ids(api, other_org):
    admin = _admin(api, org="acme-m")
    theirs = _create(api, _admin(api, org=other_org, user="olga"))

    reply = api.call("DELETE", f"/org/backup-credentials/{theirs['key_id']}", token=admin.token)

    assert (reply.status, reply.code) == (404, "BackupCredentialsNotFound")
    assert BackupCredential.get(theirs["key_id"], consistent_read=True).org_id == other_org
