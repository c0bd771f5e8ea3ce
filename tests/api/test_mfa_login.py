"""The MFA login: the authentication ceremony after the IdP step, verified by py_webauthn."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from chalicelib.base import clock
from chalicelib.base.models import Challenge, SecurityKey, Session
from tests.support.authenticator import SoftwareAuthenticator, b64url
from tests.support.key_use import stored_keys


@pytest.fixture
def bob_with_a_key(api):
    bob = api.login()
    assert api.add_key(bob, SoftwareAuthenticator(sign_count=5)).status == 201
    return bob.authenticators[0]


def _pending(api, user="bob"):
    member = api.login(user=user)
    assert member.state == "mfa_required"
    return member


def _session(user="bob") -> list[Session]:
    return [s for s in Session.scan(consistent_read=True) if s.user_id == user]


def test_options_list_only_the_members_own_keys(api, bob_with_a_key):
    carol = api.login(user="carol")
    api.add_key(carol)
    pending = _pending(api)

    reply = api.mfa_options(pending)
    assert reply.status == 200
    allowed = reply.body["publicKey"]["allowCredentials"]
    assert [a["id"] for a in allowed] == [bob_with_a_key.credential_id_b64]
    assert allowed[0]["transports"] == ["usb"]
    assert reply.body["publicKey"]["rpId"] == "localhost"
    assert Challenge.get(reply.body["challenge_id"]).ceremony == "authentication"


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_a_verified_assertion_activates_the_session_with_a_new_token(api, algorithm):
    bob = api.login()
    authenticator = SoftwareAuthenticator(algorithm=algorithm)
    api.add_key(bob, authenticator)
    pending = _pending(api)
    options = api.mfa_options(pending).body

    reply = api.mfa_verify(pending, options["challenge_id"], authenticator.authenticate(options["publicKey"]))

    assert reply.status == 200, reply.body
    assert reply.body["state"] == "active"
    assert reply.body["token"] != pending.token
    assert api.call("GET", "/me/mfa/keys", token=reply.body["token"]).status == 200
    old = api.call("GET", "/me", token=pending.token)
    assert (old.status, old.code) == (401, "InvalidToken")
    [key] = stored_keys()
    assert key.sign_count == 1
    assert key.last_used_at is not None
    shown = api.call("GET", "/me/mfa/keys", token=reply.body["token"]).body["keys"][0]
    assert shown["last_used_at"] == clock.iso(key.last_used_at)
    renamed = api.call("PATCH", f"/me/mfa/keys/{key.key_id}", token=reply.body["token"], body={"name": "Desk"})
    assert renamed.body["key"]["last_used_at"] == clock.iso(key.last_used_at)
    # The use is the key's own partition's to write, not its organization's.
    assert SecurityKey.get("acme", key.key_id, consistent_read=True).last_used_at is None
    # The registering session's proof is the key too; the new login's is the key it passed with.
    assert {s.session_id: s.verified_key_id for s in _session()} == {
        bob.token.split(".")[3]: key.key_id,
        pending.token.split(".")[3]: key.key_id,
    }


def test_a_replayed_assertion_is_refused(api, bob_with_a_key):
    pending = _pending(api)
    options = api.mfa_options(pending).body
    assertion = bob_with_a_key.authenticate(options["publicKey"])
    assert api.mfa_verify(pending, options["challenge_id"], assertion).status == 200

    again = _pending(api)
    replay = api.mfa_verify(again, options["challenge_id"], assertion)
    assert (replay.status, replay.code) == (401, "ChallengeNotFound")
    fresh = api.mfa_options(again).body
    replay = api.mfa_verify(again, fresh["challenge_id"], assertion)
    assert (replay.status, replay.code) == (401, "ChallengeMismatch")
    assert api.call("GET", "/me", token=again.token).body["session"]["state"] == "mfa_required"


def test_a_challenge_from_another_session_is_refused(api, bob_with_a_key):
    first, second = _pending(api), _pending(api)
    options = api.mfa_options(first).body
    reply = api.mfa_verify(second, options["challenge_id"], bob_with_a_key.authenticate(options["publicKey"]))
    assert (reply.status, reply.code) == (401, "ChallengeMismatch")
    for member in (first, second):
        assert api.call("GET", "/me", token=member.token).body["session"]["state"] == "mfa_required"


def test_a_registration_challenge_cannot_pass_mfa(api, bob_with_a_key):
    active = api.mfa_login(org="acme", user="bob", authenticator=bob_with_a_key)
    registration = api.registration_options(active).body
    # Put the very session that holds the registration challenge back into the MFA step.
    session_id = active.token.split(".")[3]
    Session(session_id).update(actions=[Session.state.set("mfa_required")])
    options = api.mfa_options(active).body
    forged = {**options["publicKey"], "challenge": registration["publicKey"]["challenge"]}

    reply = api.mfa_verify(active, registration["challenge_id"], bob_with_a_key.authenticate(forged))

    assert (reply.status, reply.code) == (401, "ChallengeMismatch")
    assert Session.get(session_id).state == "mfa_required"


def test_an_expired_challenge_is_refused(api, bob_with_a_key):
    pending = _pending(api)
    options = api.mfa_options(pending).body
    Challenge(options["challenge_id"]).update(actions=[Challenge.expires_at.set(clock.now() - timedelta(seconds=1))])
    reply = api.mfa_verify(pending, options["challenge_id"], bob_with_a_key.authenticate(options["publicKey"]))
    assert (reply.status, reply.code) == (401, "ChallengeExpired")


def test_another_users_key_is_refused(api, bob_with_a_key):
    carol = api.login(user="carol")
    carols_key = SoftwareAuthenticator()
    api.add_key(carol, carols_key)
    pending = _pending(api)
    options = api.mfa_options(pending).body
    options["publicKey"]["allowCredentials"] = []  # a client that ignores the allow list
    reply = api.mfa_verify(pending, options["challenge_id"], carols_key.authenticate(options["publicKey"]))
    assert (reply.status, reply.code) == (401, "UnknownCredential")
    assert all(k.last_used_at is None for k in stored_keys())


def test_a_user_handle_of_another_user_is_refused(api, bob_with_a_key):
    pending = _pending(api)
    options = api.mfa_options(pending).body
    reply = api.mfa_verify(
        pending, options["challenge_id"], bob_with_a_key.authenticate(options["publicKey"], user_handle=b"\x00" * 32)
    )
    assert (reply.status, reply.code) == (401, "UnknownCredential")


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ({"origin": "https://evil.example"}, "OriginMismatch"),
        ({"rp_id": "evil.example"}, "RpIdMismatch"),
        ({"cross_origin": True}, "CrossOriginRefused"),
        ({"client_data_type": "webauthn.create"}, "ChallengeMismatch"),
        ({"challenge": b64url(b"y" * 32)}, "ChallengeMismatch"),
    ],
)
def test_a_response_for_another_origin_rp_or_challenge_is_refused(api, bob_with_a_key, tamper, code):
    pending = _pending(api)
    options = api.mfa_options(pending).body
    reply = api.mfa_verify(
        pending, options["challenge_id"], bob_with_a_key.authenticate(options["publicKey"], **tamper)
    )
    assert (reply.status, reply.code) == (401, code)
    assert api.call("GET", "/me", token=pending.token).body["session"]["state"] == "mfa_required"


def test_user_presence_is_required(api, bob_with_a_key):
    bob_with_a_key.user_present = False
    pending = _pending(api)
    options = api.mfa_options(pending).body
    reply = api.mfa_verify(pending, options["challenge_id"], bob_with_a_key.authenticate(options["publicKey"]))
    assert (reply.status, reply.code) == (401, "UserNotPresent")


def test_a_forged_signature_is_refused(api, bob_with_a_key):
    pending = _pending(api)
    options = api.mfa_options(pending).body
    impostor = SoftwareAuthenticator(credential_id=bob_with_a_key.credential_id, sign_count=100)
    reply = api.mfa_verify(pending, options["challenge_id"], impostor.authenticate(options["publicKey"]))
    assert (reply.status, reply.code) == (401, "CeremonyFailed")
    [key] = stored_keys()
    assert (key.sign_count, key.last_used_at) == (5, None)


def test_a_sign_count_regression_is_refused_and_logged(api, bob_with_a_key, caplog):
    api.mfa_login(org="acme", user="bob", authenticator=bob_with_a_key)  # stored count now 6
    bob_with_a_key.sign_count = 3  # a clone that lags behind
    pending = _pending(api)
    options = api.mfa_options(pending).body

    with caplog.at_level(logging.WARNING, logger="keyward"):
        reply = api.mfa_verify(pending, options["challenge_id"], bob_with_a_key.authenticate(options["publicKey"]))

    assert (reply.status, reply.code) == (401, "SignCountRegression")
    assert any("sign-count regression" in record.getMessage() for record in caplog.records)
    [key] = stored_keys()
    assert key.sign_count == 6


def test_authenticators_without_a_counter_keep_working(api):
    bob = api.login()
    counterless = SoftwareAuthenticator(counter_step=0)
    api.add_key(bob, counterless)
    for _ in range(2):
        assert api.mfa_login(org="acme", user="bob", authenticator=counterless).state == "active"
