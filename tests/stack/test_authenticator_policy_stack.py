"""The authenticator policy against the running local stack, over HTTP: someone who has a
member's IdP password cannot enrol a key the organization does not accept, and an operator's
`python -m devstack mds` changes what the stack trusts."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

from tests.support.attestation_ca import VendorRoot, metadata_entry, signed_blob
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.local_stack import PROJECT_ROOT, stack_environment
from tests.support.stack_client import StackClient, unique_org

# A model the bundled metadata lists (YubiKey 5 Series with NFC), and one it does not.
LISTED_AAGUID = "2fc0579f-8113-47ea-b116-bb5a8db9202a"
IN_HOUSE_AAGUID = "7d1351a6-e097-4852-b8bf-c9ac5c9ce4a3"


def _admin_with_policy(keyward: StackClient, org: str, **policy) -> str:
    token = keyward.token(org=org, user="alice", admin=True)
    assert keyward.add_key(token, SoftwareAuthenticator()).status == 201
    reply = keyward.call("PUT", "/org/mfa/policy", token=token, body=policy)
    assert reply.status == 200, reply
    # The stream function recounts compliance under the new policy: let it finish writing.
    deadline = time.monotonic() + 30
    while keyward.call("GET", "/org/mfa", token=token).body["compliance"]["state"] != "done":
        assert time.monotonic() < deadline, "the compliance recount did not finish within 30 s"
        time.sleep(0.05)
    return token


def _attested(root: VendorRoot, aaguid: str) -> SoftwareAuthenticator:
    return SoftwareAuthenticator(
        attestation="packed",
        aaguid=uuid.UUID(aaguid).bytes,
        attestation_certificate=root.attestation_certificate(aaguid=aaguid),
    )


def test_a_stolen_idp_password_cannot_enrol_a_key_the_policy_refuses(keyward, db):
    org = unique_org("policy")
    _admin_with_policy(keyward, org, attestation="required", device_bound_only=True)
    attacker = keyward.token(org=org, user="bob")  # bob's IdP password, nothing more
    before = db.snapshot(org)

    options = keyward.registration_options(attacker).body
    assert options["publicKey"]["attestation"] == "direct"
    for authenticator, code in (
        (SoftwareAuthenticator(), "AttestationRequired"),  # a software key: no attestation at all
        (SoftwareAuthenticator(attestation="packed"), "AttestationRequired"),  # self attestation
        # A counterfeit certificate claiming a listed model: the chain ends at the wrong root.
        (_attested(VendorRoot("Counterfeit Root"), LISTED_AAGUID), "AttestationUntrusted"),
    ):
        options = keyward.registration_options(attacker).body
        reply = keyward.register(
            attacker, options["challenge_id"], authenticator.register(options["publicKey"], origin=keyward.origin)
        )
        assert (reply.status, reply.code) == (403, code), reply
    assert db.snapshot(org) == before


def test_user_verification_required_holds_at_every_check(keyward, db):
    org = unique_org("policy-uv")
    token = keyward.token(org=org, user="alice", admin=True)
    key = SoftwareAuthenticator(user_verified=True)
    assert keyward.add_key(token, key).status == 201
    assert keyward.call("PUT", "/org/mfa/policy", token=token, body={"user_verification": "required"}).status == 200

    pending = keyward.pending(org=org, user="alice", admin=True)
    assert pending.public_key["userVerification"] == "required"
    key.user_verified = False  # the key is touched, but nobody entered the PIN
    reply = keyward.mfa_verify(
        pending.token, pending.challenge_id, key.authenticate(pending.public_key, origin=keyward.origin)
    )
    assert (reply.status, reply.code) == (403, "UserVerificationRequired"), reply
    assert keyward.me(pending.token).body["session"]["state"] == "mfa_required"


def test_devstack_mds_loads_a_blob_the_stack_then_trusts(keyward, db, local_stack, tmp_path):
    vendor, mds_root = VendorRoot("In-house Vendor"), VendorRoot("Test MDS Root")
    blob = tmp_path / "blob.jwt"
    root = tmp_path / "root.pem"
    root.write_text(mds_root.pem)
    environment = {**stack_environment(), "DYNAMODB_ENDPOINT": local_stack.dynamodb}

    def devstack_mds(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "devstack", "mds", *arguments],
            cwd=PROJECT_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    # Signed by a chain that does not end at the given root: refused, nothing loaded.
    blob.write_bytes(signed_blob(number=900_000, root=VendorRoot("Stranger"), entries=[]))
    refused = devstack_mds(str(blob), "--trust-root", str(root))
    assert refused.returncode == 1 and "not loaded" in refused.stderr

    blob.write_bytes(
        signed_blob(
            number=900_001,
            root=mds_root,
            entries=[metadata_entry(aaguid=IN_HOUSE_AAGUID, description="Acme Badge 2", root=vendor)],
        )
    )
    loaded = devstack_mds(str(blob), "--trust-root", str(root))
    assert loaded.returncode == 0, loaded.stderr
    assert "900001" in loaded.stdout

    org = unique_org("policy-mds")
    _admin_with_policy(keyward, org, attestation="required")
    member = keyward.token(org=org, user="bob")
    options = keyward.registration_options(member).body
    credential = _attested(vendor, IN_HOUSE_AAGUID).register(options["publicKey"], origin=keyward.origin)
    reply = keyward.register(member, options["challenge_id"], credential)
    assert reply.status == 201, reply
    assert (reply.body["key"]["model"], reply.body["key"]["attested"], reply.body["key"]["policy_compliant"]) == (
        "Acme Badge 2",
        True,
        True,
    )
