"""Adding a security key: the registration ceremony, verified by py_webauthn for real."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.base import clock
from chalicelib.base.models import (
    Challenge,
    CredentialClaim,
    Member,
    SecurityKey,
)
from tests.support.authenticator import SoftwareAuthenticator, b64url, b64url_decode
from tests.support.keyward_client import hold_keys_in_table


def _register(api, member, authenticator, *, name="My key", options=None, **tamper):
    options = options or api.registration_options(member).body
    credential = authenticator.register(options["publicKey"], **tamper)
    return api.call(
        "POST",
        "/me/mfa/keys",
        token=member.token,
        body={"challenge_id": options["challenge_id"], "name": name, "credential": credential},
    )


def _stored_keys() -> list[SecurityKey]:
    return list(SecurityKey.scan(consistent_read=True))


def test_options_are_w3c_creation_options_bound_to_a_stored_challenge(api):
    bob = api.login()
    reply = api.registration_options(bob)

    assert reply.status == 200
    public_key = reply.body["publicKey"]
    assert public_key["rp"] == {"id": "localhost", "name": "keyward (local)"}
    assert public_key["user"]["name"] == "bob@acme.example"
    assert {p["alg"] for p in public_key["pubKeyCredParams"]} == {-7, -8, -257}
    assert public_key["excludeCredentials"] == []
    challenge = Challenge.get(reply.body["challenge_id"])
    assert b64url(challenge.challenge) == public_key["challenge"]
    assert (challenge.ceremony, challenge.org_id, challenge.user_id) == ("registration", "acme", "bob")
    assert timedelta(seconds=299) < challenge.expires_at - clock.now() <= timedelta(seconds=300)


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
@pytest.mark.parametrize("attestation", ["none", "packed"])
def test_a_key_is_registered_with_everything_about_it_stored(api, algorithm, attestation):
    bob = api.login()
    authenticator = SoftwareAuthenticator(
        algorithm=algorithm,
        attestation=attestation,
        aaguid=bytes(range(16)),
        backup_eligible=True,
        backed_up=True,
        transports=["usb", "nfc"],
    )

    reply = api.add_key(bob, authenticator, name="  Blue YubiKey  ")

    assert reply.status == 201, reply.body
    shown = reply.body["key"]
    assert shown["name"] == "Blue YubiKey"
    assert shown["last_used_at"] is None
    [key] = _stored_keys()
    assert key.key_id == shown["id"]
    assert key.credential_id == authenticator.credential_id
    assert key.public_key == authenticator.cose_public_key
    assert key.algorithm == (-7 if algorithm == "ES256" else -8)
    assert key.attestation_format == attestation
    assert key.aaguid == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert key.transports == ["usb", "nfc"]
    assert (key.backup_eligible, key.backed_up) == (True, True)
    assert key.sign_count == 0
    assert Member.get("acme", "bob").key_count == 1
    assert CredentialClaim.get(key.key_id).user_id == "bob"


def test_options_exclude_the_keys_the_member_already_has(api):
    bob = api.login()
    first, second = SoftwareAuthenticator(), SoftwareAuthenticator(algorithm="EdDSA")
    api.add_key(bob, first)
    api.add_key(bob, second)

    excluded = api.registration_options(bob).body["publicKey"]["excludeCredentials"]
    assert {e["id"] for e in excluded} == {first.credential_id_b64, second.credential_id_b64}
    assert all(e["type"] == "public-key" for e in excluded)


def test_the_same_credential_cannot_be_registered_twice_by_anyone(api):
    bob, carol, eve = api.login(user="bob"), api.login(user="carol"), api.login(org="umbrella", user="eve")
    authenticator = SoftwareAuthenticator()
    assert api.add_key(bob, authenticator).status == 201

    for member in (bob, carol, eve):
        options = api.registration_options(member).body
        options["publicKey"]["excludeCredentials"] = []  # a client ignoring the exclude list
        reply = _register(api, member, authenticator, options=options)
        assert (reply.status, reply.code) == (409, "KeyAlreadyRegistered")
    assert len(_stored_keys()) == 1
    assert Member.get("acme", "carol").key_count == 0


def test_a_challenge_is_single_use(api):
    bob = api.login()
    options = api.registration_options(bob).body
    assert _register(api, bob, SoftwareAuthenticator(), options=options).status == 201

    replay = _register(api, bob, SoftwareAuthenticator(), options=options)
    assert (replay.status, replay.code) == (401, "ChallengeNotFound")
    assert len(_stored_keys()) == 1


def test_an_expired_challenge_is_refused(api):
    bob = api.login()
    options = api.registration_options(bob).body
    Challenge(options["challenge_id"]).update(actions=[Challenge.expires_at.set(clock.now() - timedelta(seconds=1))])

    reply = _register(api, bob, SoftwareAuthenticator(), options=options)
    assert (reply.status, reply.code) == (401, "ChallengeExpired")
    assert _stored_keys() == []


def test_a_challenge_of_another_session_is_refused_and_stays_usable_for_its_owner(api):
    bob_phone, bob_laptop = api.login(), api.login()
    options = api.registration_options(bob_phone).body

    stolen = _register(api, bob_laptop, SoftwareAuthenticator(), options=options)
    assert (stolen.status, stolen.code) == (401, "ChallengeMismatch")
    assert _register(api, bob_phone, SoftwareAuthenticator(), options=options).status == 201


def test_an_authentication_challenge_cannot_register_a_key(api):
    bob = api.login()
    api.add_key(bob)
    pending = api.login()
    leftover = api.mfa_options(pending).body  # an authentication challenge of this very session
    options = api.mfa_options(pending).body
    passed = api.mfa_verify(pending, options["challenge_id"], bob.authenticators[0].authenticate(options["publicKey"]))
    pending.token = passed.body["token"]

    creation = api.registration_options(pending).body["publicKey"]
    forged = {
        "challenge_id": leftover["challenge_id"],
        "publicKey": {**creation, "challenge": leftover["publicKey"]["challenge"]},
    }
    reply = _register(api, pending, SoftwareAuthenticator(), options=forged)
    assert (reply.status, reply.code) == (401, "ChallengeMismatch")
    assert len(_stored_keys()) == 1


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ({"origin": "https://evil.example"}, "OriginMismatch"),
        ({"rp_id": "evil.example"}, "RpIdMismatch"),
        ({"cross_origin": True}, "CrossOriginRefused"),
        ({"client_data_type": "webauthn.get"}, "ChallengeMismatch"),
        ({"challenge": b64url(b"x" * 32)}, "ChallengeMismatch"),
    ],
)
def test_a_response_for_another_origin_rp_or_challenge_is_refused(api, tamper, code):
    bob = api.login()
    reply = _register(api, bob, SoftwareAuthenticator(), **tamper)
    assert (reply.status, reply.code) == (401, code)
    assert _stored_keys() == []
    assert Member.get("acme", "bob").key_count == 0


def test_cross_origin_false_is_accepted(api):
    bob = api.login()
    assert _register(api, bob, SoftwareAuthenticator(), cross_origin=False).status == 201


@pytest.mark.parametrize(
    ("authenticator", "code"),
    [
        (SoftwareAuthenticator(user_present=False), "UserNotPresent"),
        (SoftwareAuthenticator(backup_eligible=False, backed_up=True), "InvalidBackupFlags"),
        (SoftwareAuthenticator(cose_alg_override=-65535), "UnsupportedAlgorithm"),
    ],
)
def test_an_authenticator_that_breaks_the_rules_is_refused(api, authenticator, code):
    bob = api.login()
    reply = _register(api, bob, authenticator)
    assert (reply.status, reply.code) == (401, code)
    assert _stored_keys() == []


def test_a_packed_attestation_with_a_bad_signature_is_refused(api):
    bob = api.login()
    authenticator = SoftwareAuthenticator(attestation="packed")
    genuine_sign = authenticator.sign
    authenticator.sign = lambda data: genuine_sign(data + b"tampered")
    reply = _register(api, bob, authenticator)
    assert (reply.status, reply.code) == (401, "CeremonyFailed")
    assert _stored_keys() == []


@pytest.mark.parametrize(
    "statement",
    [
        {"alg": -7, "ver": -7, "response": -7},
        {"ver": "1", "response": "not a JWS"},
        {},
    ],
    ids=["numbers", "not-a-jws", "empty"],
)
def test_a_malformed_safetynet_statement_is_a_failed_ceremony_not_a_500(api, statement):
    """Found by the property tests: py_webauthn reads an android-safetynet statement's fields as it
    finds them, and a number where it expects bytes broke the request."""
    import cbor2

    bob = api.login()
    options = api.registration_options(bob).body
    credential = SoftwareAuthenticator().register(options["publicKey"])
    document = cbor2.loads(b64url_decode(credential["response"]["attestationObject"]))
    document["fmt"], document["attStmt"] = "android-safetynet", statement
    credential["response"]["attestationObject"] = b64url(cbor2.dumps(document))

    reply = api.call(
        "POST",
        "/me/mfa/keys",
        token=bob.token,
        body={"challenge_id": options["challenge_id"], "name": "My key", "credential": credential},
    )

    assert (reply.status, reply.code) == (401, "CeremonyFailed")
    assert _stored_keys() == []


def test_a_credential_id_of_1024_bytes_is_refused(api):
    bob = api.login()
    reply = _register(api, bob, SoftwareAuthenticator(credential_id=bytes(1024)))
    assert (reply.status, reply.code) == (400, "CredentialIdTooLong")
    assert _register(api, bob, SoftwareAuthenticator(credential_id=b"\x01" * 1023)).status == 201


def test_a_member_holds_at_most_twenty_keys(api):
    bob = api.login()
    # The session has just proved one of the keys, as one of a member with keys must have.
    hold_keys_in_table(bob, count=20)
    reply = api.add_key(bob)
    assert (reply.status, reply.code) == (409, "TooManyKeys")
    assert _stored_keys() == []
