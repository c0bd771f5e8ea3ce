"""The organization's authenticator policy and the FIDO Metadata Service behind it.

Real attestation objects captured from real authenticators (tests/support/attestation_vectors.py)
verify against the bundled metadata; test vendors (tests/support/attestation_ca.py) and test BLOBs let the
rest of the suite control what the metadata says. tests/api/test_attestation_formats.py registers
each real key over the API in a process of its own.
"""

from __future__ import annotations

import base64
import importlib
import json
import uuid

import pytest

from chalicelib.background import metadata_refresh
from chalicelib.base.errors import MetadataRejected
from chalicelib.base.models import (
    AuthenticatorModel,
    Organization,
    SecurityKey,
    Session,
)
from chalicelib.ceremony import metadata
from tests.support.attestation_ca import VendorRoot, metadata_entry, signed_blob
from tests.support.attestation_vectors import (
    CapturedRegistration,
    captured,
    certificate_store_at,
)
from tests.support.audit_log import logged_events
from tests.support.authenticator import SoftwareAuthenticator

TRUSTED = "6e2b4c1a-0d5f-4c9e-9a3b-1f2e3d4c5b6a"
COMPROMISED = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
UNLISTED = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def vendor() -> VendorRoot:
    return VendorRoot("Keyward Test Vendor Root")


@pytest.fixture
def mds_root() -> VendorRoot:
    return VendorRoot("Keyward Test MDS Root")


@pytest.fixture
def loaded(vendor, mds_root):
    """A verified BLOB in the table: one certified model, one the FIDO Alliance reports revoked."""
    blob = signed_blob(
        number=10_000,
        root=mds_root,
        entries=[
            metadata_entry(aaguid=TRUSTED, description="Test Key 5", root=vendor),
            metadata_entry(
                aaguid=COMPROMISED, description="Leaky Key 1", root=vendor, statuses=["FIDO_CERTIFIED_L1", "REVOKED"]
            ),
        ],
    )
    metadata_refresh.load_blob(blob=blob, trust_root=mds_root.der)
    return blob


def _key(vendor: VendorRoot, aaguid: str, **flags) -> SoftwareAuthenticator:
    return SoftwareAuthenticator(
        attestation="packed",
        aaguid=uuid.UUID(aaguid).bytes,
        attestation_certificate=vendor.attestation_certificate(aaguid=aaguid),
        **flags,
    )


def _admin(api, org: str = "acme"):
    first = api.login(org=org, user="alice", admin=True)
    assert api.add_key(first, SoftwareAuthenticator()).status == 201
    return api.mfa_login(org=org, user="alice", authenticator=first.authenticators[0], admin=True)


def _set_policy(api, admin, **policy):
    reply = api.call("PUT", "/org/mfa/policy", token=admin.token, body=policy)
    assert reply.status == 200, reply.body
    return reply


def _stored_keys(org: str, user: str) -> list[SecurityKey]:
    return [k for k in SecurityKey.query(org, consistent_read=True) if k.user_id == user]


# --- real authenticators' attestation against the bundled metadata ---------------------------------


def _captured_now(monkeypatch, name: str) -> CapturedRegistration:
    """A real registration, with py_webauthn checking its certificates at the moment it was captured."""
    registration = captured(name)
    chains = importlib.import_module("webauthn.helpers.validate_certificate_chain")
    monkeypatch.setattr(chains, "_generate_new_cert_store", lambda: certificate_store_at(registration.captured_at))
    return registration


@pytest.mark.parametrize(
    "vector, fmt, model",
    [
        ("YUBIKEY_5_NFC", "packed", "YubiKey 5 Series with NFC"),
        ("YUBIKEY_4", "fido-u2f", "YK4 Series Key by Yubico"),
        ("MICROSOFT_SURFACE_1796", "tpm", "Windows Hello Hardware Authenticator"),
        ("PIXEL_8A", "android-key", "Android Authenticator"),
        ("NEXUS_5", "android-safetynet", "Android Authenticator"),
    ],
)
def test_real_attestation_verifies_up_to_a_root_the_metadata_lists(monkeypatch, vector, fmt, model):
    registration = _captured_now(monkeypatch, vector)
    assert registration.format == fmt
    verdict = metadata.examine(
        attestation_object=registration.attestation_object, client_data_json=registration.client_data_json
    )
    assert verdict.certified and verdict.attested, vector
    assert verdict.model is not None and verdict.model.description == model


def test_apple_attestation_is_not_in_the_metadata():
    """Apple lists no model with the FIDO Alliance: its anonymous attestation counts only where an
    operator trusts Apple's root (tests/api/test_attestation_formats.py)."""
    registration = captured("IPHONE_12")
    verdict = metadata.examine(
        attestation_object=registration.attestation_object, client_data_json=registration.client_data_json
    )
    assert (verdict.certified, verdict.attested, verdict.model) == (True, False, None)


def test_none_attestation_of_a_real_passkey_proves_no_model():
    registration = captured("NONE_ATTESTATION")
    verdict = metadata.examine(
        attestation_object=registration.attestation_object, client_data_json=registration.client_data_json
    )
    assert not verdict.certified and not verdict.attested


def test_a_real_statement_with_a_forged_chain_does_not_verify(vendor):
    import cbor2

    registration = captured("YUBIKEY_5_NFC")
    document = cbor2.loads(registration.attestation_object)
    # The same statement, but "certified" by a root of our own making.
    forged = vendor.attestation_certificate(aaguid=str(uuid.UUID(bytes=document["authData"][37:53])))
    document["attStmt"]["x5c"] = list(forged.chain)
    verdict = metadata.examine(attestation_object=cbor2.dumps(document), client_data_json=registration.client_data_json)
    assert verdict.certified and not verdict.attested


def test_a_real_android_key_statement_on_another_chain_does_not_verify(monkeypatch, vendor):
    """The same statement, its chain ending at a root of our own making: refused, as the root is
    not one of Google's hardware attestation roots."""
    import cbor2

    registration = _captured_now(monkeypatch, "PIXEL_8A")
    document = cbor2.loads(registration.attestation_object)
    document["attStmt"]["x5c"] = [*document["attStmt"]["x5c"][:-1], vendor.der]
    verdict = metadata.examine(attestation_object=cbor2.dumps(document), client_data_json=registration.client_data_json)
    assert verdict.certified and not verdict.attested


@pytest.mark.parametrize("vector", ["YUBIKEY_5_NFC", "PIXEL_8A", "NEXUS_5"])
def test_a_tampered_client_data_hash_does_not_verify(monkeypatch, vector):
    registration = _captured_now(monkeypatch, vector)
    verdict = metadata.examine(
        attestation_object=registration.attestation_object, client_data_json=registration.client_data_json + b" "
    )
    assert verdict.certified and not verdict.attested


# --- the policy's API -------------------------------------------------------------------------------


def test_the_default_policy_is_todays_behaviour(api):
    admin = _admin(api)
    reply = api.call("GET", "/org/mfa/policy", token=admin.token)
    assert reply.status == 200
    assert reply.body["policy"] == {
        "user_verification": "discouraged",
        "attestation": "none",
        "allowed_aaguids": [],
        "denied_aaguids": [],
        "device_bound_only": False,
        "applies_to": "all_keys",
    }
    keys = api.call("GET", "/me/mfa/keys", token=admin.token).body["keys"]
    assert keys[0]["policy_compliant"] is True and keys[0]["attested"] is False and keys[0]["model"] is None


def test_only_admins_see_or_change_the_policy(api):
    member = api.login(user="bob")
    assert api.call("GET", "/org/mfa/policy", token=member.token).code == "AdminRequired"
    reply = api.call("PUT", "/org/mfa/policy", token=member.token, body={"attestation": "required"})
    assert (reply.status, reply.code) == (403, "AdminRequired")
    assert Organization.get("acme", consistent_read=True).authenticator_policy is None


@pytest.mark.parametrize(
    "body",
    [
        {"attestation": "direct"},
        {"user_verification": "always"},
        {"device_bound_only": "yes"},
        {"allowed_aaguids": ["not-a-uuid"]},
        {"allowed_aaguids": "6e2b4c1a-0d5f-4c9e-9a3b-1f2e3d4c5b6a"},
        {"allowed_aaguids": [TRUSTED], "denied_aaguids": [TRUSTED]},
        {"colour": "red"},
    ],
)
def test_a_malformed_policy_is_refused_and_nothing_changes(api, body):
    admin = _admin(api)
    reply = api.call("PUT", "/org/mfa/policy", token=admin.token, body=body)
    assert (reply.status, reply.code) == (400, "InvalidPolicy"), reply.body
    assert Organization.get("acme", consistent_read=True).authenticator_policy is None


def test_a_change_is_audited_with_before_and_after(api):
    admin = _admin(api)
    _set_policy(api, admin, user_verification="required", denied_aaguids=[COMPROMISED.upper()])
    [event] = [e for e in logged_events("acme") if e.action == "policy.changed"]
    details = event.details.as_dict()
    assert details["before"]["user_verification"] == "discouraged"
    assert details["after"]["user_verification"] == "required"
    assert details["after"]["denied_aaguids"] == [COMPROMISED]  # normalized
    assert api.call("GET", "/org/mfa/policy", token=admin.token).body["policy"]["user_verification"] == "required"


def test_a_malformed_dry_run_is_refused_only_once_the_caller_is_known(api):
    body = {"device_bound_only": True}
    anonymous = api.call("PUT", "/org/mfa/policy?dry_run=maybe", body=body)
    assert anonymous.status == 401, anonymous.body
    admin = _admin(api)
    refused = api.call("PUT", "/org/mfa/policy?dry_run=maybe", token=admin.token, body=body)
    assert (refused.status, refused.code) == (400, "MalformedRequest")
    assert Organization.get("acme", consistent_read=True).authenticator_policy is None


def test_a_dry_run_counts_without_changing_anything(api):
    admin = _admin(api)
    bob = api.login(user="bob")
    assert api.add_key(bob, SoftwareAuthenticator(backup_eligible=True)).status == 201
    reply = api.call("PUT", "/org/mfa/policy?dry_run=true", token=admin.token, body={"device_bound_only": True})
    assert reply.status == 200
    assert reply.body["saved"] is False
    assert {name: value for name, value in reply.body["impact"].items() if name.startswith(("keys_", "members_"))} == {
        "keys_total": 2,
        "keys_noncompliant": 1,
        "members_with_keys": 2,
        "members_noncompliant": 1,
        "members_affected": 1,
        "members_spared": 0,
    }
    assert reply.body["policy"]["device_bound_only"] is False  # what is in force
    assert Organization.get("acme", consistent_read=True).authenticator_policy is None
    assert not [e for e in logged_events("acme") if e.action == "policy.changed"]


# --- registration under a policy ----------------------------------------------------------------------


def test_registration_options_follow_the_policy(api):
    admin = _admin(api)
    _set_policy(api, admin, attestation="required", user_verification="required", device_bound_only=True)
    options = api.registration_options(admin).body["publicKey"]
    assert options["attestation"] == "direct"
    assert options["hints"] == ["security-key"]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["authenticatorSelection"]["authenticatorAttachment"] == "cross-platform"
    mfa = api.call("POST", "/auth/mfa/options", token=api.login(user="alice", admin=True).token).body["publicKey"]
    assert mfa["userVerification"] == "required"


@pytest.mark.parametrize(
    "authenticator, code",
    [
        (lambda vendor: SoftwareAuthenticator(), "AttestationRequired"),
        (
            lambda vendor: SoftwareAuthenticator(attestation="packed", aaguid=uuid.UUID(TRUSTED).bytes),
            "AttestationRequired",
        ),
        # A chain from a root the metadata does not list for the model: a forged certificate.
        (lambda vendor: _key(VendorRoot("Counterfeit Root"), TRUSTED), "AttestationUntrusted"),
        (lambda vendor: _key(vendor, UNLISTED), "AttestationUntrusted"),
        (lambda vendor: _key(vendor, COMPROMISED), "AuthenticatorNotAllowed"),
    ],
)
def test_attestation_required_refuses_what_does_not_prove_a_trusted_model(api, vendor, loaded, authenticator, code):
    admin = _admin(api)
    _set_policy(api, admin, attestation="required")
    bob = api.login(user="bob")
    reply = api.add_key(bob, authenticator(vendor))
    assert (reply.status, reply.code) == (403, code), reply.body
    assert _stored_keys("acme", "bob") == []


def test_attestation_required_accepts_a_trusted_model_and_records_it(api, vendor, loaded):
    admin = _admin(api)
    _set_policy(api, admin, attestation="required")
    bob = api.login(user="bob")
    reply = api.add_key(bob, _key(vendor, TRUSTED))
    assert reply.status == 201, reply.body
    key = reply.body["key"]
    assert (key["model"], key["attested"], key["policy_compliant"], key["aaguid"]) == (
        "Test Key 5",
        True,
        True,
        TRUSTED,
    )
    [stored] = _stored_keys("acme", "bob")
    assert (stored.model_id, stored.attested, stored.model_status) == (TRUSTED, True, "FIDO_CERTIFIED_L1")


@pytest.fixture
def operator_trust(monkeypatch, vendor):
    """An operator who trusts ``vendor``'s root for one in-house model (an AAGUID)."""
    from chalicelib.base.config import settings

    in_house = str(uuid.uuid4())
    monkeypatch.setenv(
        "KEYWARD_EXTRA_AUTHENTICATOR_ROOTS",
        json.dumps({in_house: {"description": "Acme Badge", "roots": [vendor.pem]}}),
    )
    settings.cache_clear()
    yield in_house
    monkeypatch.delenv("KEYWARD_EXTRA_AUTHENTICATOR_ROOTS")
    settings.cache_clear()


def test_operator_roots_trust_an_in_house_model(api, vendor, operator_trust):
    admin = _admin(api)
    _set_policy(api, admin, attestation="required")
    reply = api.add_key(api.login(user="bob"), _key(vendor, operator_trust))
    assert reply.status == 201, reply.body
    assert (reply.body["key"]["model"], reply.body["key"]["attested"]) == ("Acme Badge", True)
    # Trust is per model: the same root does not vouch for another AAGUID.
    assert api.add_key(api.login(user="carol"), _key(vendor, UNLISTED)).code == "AttestationUntrusted"


@pytest.mark.parametrize(
    "raw", ['{"x": {"roots": []}}', '{"6e2b4c1a-0d5f-4c9e-9a3b-1f2e3d4c5b6a": {"roots": ["nope"]}}', "[1"]
)
def test_unusable_operator_roots_are_a_configuration_error(raw):
    from chalicelib.base.config import load
    from chalicelib.base.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        load({"KEYWARD_EXTRA_AUTHENTICATOR_ROOTS": raw})


def test_aaguid_lists(api, vendor, loaded):
    admin = _admin(api)
    _set_policy(api, admin, allowed_aaguids=[TRUSTED])
    bob = api.login(user="bob")
    assert api.add_key(bob, SoftwareAuthenticator()).code == "AuthenticatorNotAllowed"
    assert api.add_key(bob, _key(vendor, TRUSTED)).status == 201
    _set_policy(api, admin, denied_aaguids=[TRUSTED])
    carol = api.login(user="carol")
    assert api.add_key(carol, _key(vendor, TRUSTED)).code == "AuthenticatorNotAllowed"
    assert api.add_key(carol, SoftwareAuthenticator()).status == 201


def test_device_bound_only_refuses_synced_passkeys(api):
    admin = _admin(api)
    _set_policy(api, admin, device_bound_only=True)
    bob = api.login(user="bob")
    reply = api.add_key(bob, SoftwareAuthenticator(backup_eligible=True, backed_up=True))
    assert (reply.status, reply.code) == (403, "SyncedCredentialNotAllowed")
    assert api.add_key(bob, SoftwareAuthenticator(backup_eligible=False)).status == 201


def test_user_verification_required_at_registration_and_at_every_check(api):
    admin = _admin(api)
    _set_policy(api, admin, user_verification="required")
    bob = api.login(user="bob")
    assert api.add_key(bob, SoftwareAuthenticator(user_verified=False)).code == "UserVerificationRequired"
    verifying = SoftwareAuthenticator(user_verified=True)
    assert api.add_key(bob, verifying).status == 201

    pending = api.login(user="bob")
    options = api.mfa_options(pending).body
    verifying.user_verified = False
    reply = api.mfa_verify(pending, options["challenge_id"], verifying.authenticate(options["publicKey"]))
    assert (reply.status, reply.code) == (403, "UserVerificationRequired")
    assert Session.get(pending.token.split(".")[3], consistent_read=True).state == "mfa_required"
    assert [e.details["reason"] for e in logged_events("acme") if e.action == "mfa.failed"] == [
        "UserVerificationRequired"
    ]
    verifying.user_verified = True
    options = api.mfa_options(pending).body
    assert api.mfa_verify(pending, options["challenge_id"], verifying.authenticate(options["publicKey"])).status == 200


# --- keys registered before a change ----------------------------------------------------------------


def test_existing_keys_show_compliance_and_admins_list_the_rest(api, vendor, loaded, stream):
    admin = _admin(api)
    bob = api.login(user="bob")
    assert api.add_key(bob, _key(vendor, TRUSTED), name="attested").status == 201
    assert api.add_key(bob, SoftwareAuthenticator(), name="plain").status == 201
    assert api.call("GET", "/org/mfa", token=admin.token).body["members_compliant"] == 2
    _set_policy(api, admin, attestation="required")

    mine = {k["name"]: k["policy_compliant"] for k in api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"]}
    assert mine == {"attested": True, "plain": False}
    why = {k["name"]: k["policy_shortfalls"] for k in api.call("GET", "/me/mfa/keys", token=bob.token).body["keys"]}
    assert why == {"attested": [], "plain": ["AttestationRequired"]}
    listed = api.call("GET", "/org/mfa/keys?compliant=false&limit=1", token=admin.token).body
    names = [k["name"] for k in listed["keys"]]
    while listed["next"]:
        listed = api.call("GET", f"/org/mfa/keys?compliant=false&limit=1&next={listed['next']}", token=admin.token).body
        names += [k["name"] for k in listed["keys"]]
    assert sorted(names) == ["My key", "plain"]  # alice's and bob's plain keys
    # Until the stream function has recounted, the page says so rather than show a stale figure.
    status = api.call("GET", "/org/mfa", token=admin.token).body
    assert (status["members_compliant"], status["compliance"]) == (None, {"state": "recounting"})
    assert stream.drain()
    # alice holds only a plain key now: she no longer counts; bob does, with his attested key.
    status = api.call("GET", "/org/mfa", token=admin.token).body
    assert (status["members_compliant"], status["compliance"]) == (1, {"state": "done"})
    assert api.call("GET", "/org/mfa/keys?compliant=true", token=admin.token).code == "MalformedRequest"


def test_under_enforcement_a_member_whose_keys_all_fall_short_must_register_a_compliant_one(api, vendor, loaded):
    admin = _admin(api)
    bob = api.login(user="bob")
    plain = SoftwareAuthenticator()
    assert api.add_key(bob, plain).status == 201
    assert api.add_key(admin, _key(vendor, TRUSTED)).status == 201
    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    _set_policy(api, admin, attestation="required")

    bob = api.mfa_login(org="acme", user="bob", authenticator=plain)
    assert bob.state == "registration_required"
    assert api.call("GET", "/me/mfa/keys", token=bob.token).code == "RegistrationRequired"
    assert api.add_key(bob, SoftwareAuthenticator()).code == "AttestationRequired"
    reply = api.add_key(bob, _key(vendor, TRUSTED))
    assert reply.status == 201, reply.body
    assert reply.body["session"]["state"] == "active"


def test_under_enforcement_a_refused_key_cannot_stand_in_for_a_compliant_one(api, vendor, loaded):
    admin = _admin(api)
    plain = admin.authenticators[0]
    assert api.add_key(admin, _key(vendor, TRUSTED)).status == 201
    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    _set_policy(api, admin, attestation="required")
    pending = api.login(user="alice", admin=True)
    options = api.mfa_options(pending).body
    reply = api.mfa_verify(pending, options["challenge_id"], plain.authenticate(options["publicKey"]))
    assert (reply.status, reply.code) == (403, "AuthenticatorNotAllowed")


# --- the metadata itself ------------------------------------------------------------------------------


def test_a_blob_with_a_bad_signature_is_rejected_and_the_old_one_kept(vendor, mds_root, loaded):
    header, payload, signature = loaded.split(b".")
    document = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    document["no"] += 1
    document["entries"][0]["statusReports"].append({"status": "REVOKED", "effectiveDate": "2030-01-01"})
    tampered = header + b"." + base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=") + b"." + signature
    with pytest.raises(MetadataRejected):
        metadata_refresh.load_blob(blob=tampered, trust_root=mds_root.der)
    # Signed by a chain that ends at another root: refused too.
    with pytest.raises(MetadataRejected):
        metadata_refresh.load_blob(
            blob=signed_blob(number=20_000, root=VendorRoot("Not FIDO"), entries=[]), trust_root=mds_root.der
        )
    assert AuthenticatorModel.get(metadata.CURRENT, consistent_read=True).blob_number == 10_000
    assert AuthenticatorModel.get(TRUSTED, consistent_read=True).statuses == ["FIDO_CERTIFIED_L1"]


def test_an_older_blob_is_not_loaded(vendor, mds_root, loaded):
    with pytest.raises(MetadataRejected):
        metadata_refresh.load_blob(blob=signed_blob(number=9_999, root=mds_root, entries=[]), trust_root=mds_root.der)
    assert AuthenticatorModel.get(metadata.CURRENT, consistent_read=True).blob_number == 10_000


def test_the_production_trust_root_is_the_fido_alliances():
    from cryptography import x509

    root = x509.load_der_x509_certificate(metadata_refresh.fido_root())
    assert "GlobalSign Root CA - R3" in root.subject.rfc4514_string()
    with pytest.raises(MetadataRejected):
        metadata_refresh.load_blob(blob=b"not.a.blob")


def test_a_model_that_turns_revoked_is_flagged_on_every_stored_key_and_audited(api, vendor, mds_root, loaded):
    admin = _admin(api)
    _set_policy(api, admin, attestation="required")
    bob = api.login(user="bob")
    assert api.add_key(bob, _key(vendor, TRUSTED)).status == 201
    other = api.login(org="globex", user="carol")
    assert api.add_key(other, _key(vendor, TRUSTED)).status == 201

    loaded_now = metadata_refresh.load_blob(
        trust_root=mds_root.der,
        blob=signed_blob(
            number=10_001,
            root=mds_root,
            entries=[
                metadata_entry(
                    aaguid=TRUSTED,
                    description="Test Key 5",
                    root=vendor,
                    statuses=["FIDO_CERTIFIED_L1", "USER_VERIFICATION_BYPASS"],
                ),
            ],
        ),
    )
    assert loaded_now.newly_compromised == (TRUSTED,) and loaded_now.keys_flagged == 2
    for org, user in (("acme", "bob"), ("globex", "carol")):
        [stored] = _stored_keys(org, user)
        assert stored.model_status == "USER_VERIFICATION_BYPASS"
        [event] = [e for e in logged_events(org) if e.action == "key.model_compromised"]
        assert event.target == stored.key_id and event.user_id == user
        # keyward flagged it on its own: neither a member nor an operator did.
        assert (event.actor, event.actor_kind) == ("keyward", "system")
    listed = api.call("GET", "/org/mfa/keys?user_id=bob", token=admin.token).body["keys"]
    assert (listed[0]["model_status"], listed[0]["policy_compliant"]) == ("USER_VERIFICATION_BYPASS", False)
    # The model left out of the new BLOB is gone from the table.
    with pytest.raises(AuthenticatorModel.DoesNotExist):
        AuthenticatorModel.get(COMPROMISED, consistent_read=True)


def test_an_attestation_statement_whose_chain_is_not_a_list_proves_nothing():
    """Found by the property tests: an x5c that is a number must not break the examination."""
    import cbor2

    registration = captured("NONE_ATTESTATION")
    document = cbor2.loads(registration.attestation_object)
    document["attStmt"] = {"alg": -7, "x5c": -7}
    verdict = metadata.examine(attestation_object=cbor2.dumps(document), client_data_json=registration.client_data_json)
    assert not verdict.certified and not verdict.attested


def test_under_enforcement_a_refused_key_opens_no_step_up_window(api, vendor, loaded, monkeypatch):
    """A step-up proves what the MFA check proves: a key the policy refuses is refused here too,
    audited, and the sensitive actions stay closed until a key that counts steps up."""
    from datetime import timedelta

    from chalicelib.base import clock

    admin = _admin(api)
    plain = admin.authenticators[0]
    trusted = _key(vendor, TRUSTED)
    assert api.add_key(admin, trusted).status == 201
    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    _set_policy(api, admin, attestation="required")
    later = clock.now() + timedelta(minutes=20)
    monkeypatch.setattr(clock, "now", lambda: later)
    delete_plain = f"/me/mfa/keys/{_stored_keys('acme', 'alice')[0].key_id}"
    assert api.call("DELETE", delete_plain, token=admin.token).code == "ReauthenticationRequired"

    options = api.call("POST", "/auth/reauth/options", token=admin.token).body
    reply = api.call(
        "POST",
        "/auth/reauth/verify",
        token=admin.token,
        body={"challenge_id": options["challenge_id"], "credential": plain.authenticate(options["publicKey"])},
    )

    assert (reply.status, reply.code) == (403, "AuthenticatorNotAllowed")
    assert api.call("DELETE", delete_plain, token=admin.token).code == "ReauthenticationRequired"
    failed = [e.details.as_dict() for e in logged_events("acme") if e.action == "reauth.failed"]
    assert failed == [{"reason": "AuthenticatorNotAllowed"}]
    options = api.call("POST", "/auth/reauth/options", token=admin.token).body
    reply = api.call(
        "POST",
        "/auth/reauth/verify",
        token=admin.token,
        body={"challenge_id": options["challenge_id"], "credential": trusted.authenticate(options["publicKey"])},
    )
    assert reply.status == 200, reply.body
    assert api.call("DELETE", delete_plain, token=admin.token).status == 204


def test_under_enforcement_a_policy_change_lapses_every_proof_until_a_key_that_counts_steps_up(api, vendor, loaded):
    """The organization accepts a key by its policy now, not by the policy of the moment it was
    proved: after a change, a session steps up again before anything sensitive."""
    admin = _admin(api)
    trusted = _key(vendor, TRUSTED)
    assert api.add_key(admin, trusted).status == 201
    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    admin = api.mfa_login(org="acme", user="alice", authenticator=admin.authenticators[0], admin=True)
    assert api.call("GET", "/org/mfa/policy", token=admin.token).status == 200

    _set_policy(api, admin, attestation="required")

    refused = api.call("PUT", "/org/mfa/policy", token=admin.token, body={})
    assert (refused.status, refused.code) == (403, "ReauthenticationRequired")
    assert api.call("GET", "/org/mfa/policy", token=admin.token).body["policy"]["attestation"] == "required"
    options = api.call("POST", "/auth/reauth/options", token=admin.token).body
    assert (
        api.call(
            "POST",
            "/auth/reauth/verify",
            token=admin.token,
            body={"challenge_id": options["challenge_id"], "credential": trusted.authenticate(options["publicKey"])},
        ).status
        == 200
    )
    assert api.call("PUT", "/org/mfa/policy", token=admin.token, body={}).status == 200
