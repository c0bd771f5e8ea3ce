"""The software authenticator's output passes (and, tampered, fails) py_webauthn's verification."""

from __future__ import annotations

import json
from typing import Any

import cbor2
import pytest
import webauthn
from webauthn.helpers import parse_attestation_object
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
)

from tests.support.authenticator import (
    CredentialExcluded,
    CredentialNotAllowed,
    SoftwareAuthenticator,
    b64url,
    b64url_decode,
)

RP_ID = "localhost"
ORIGIN = "http://localhost:8000"


def registration_options(**kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Server-side options object and the JSON a browser would receive."""
    opts = webauthn.generate_registration_options(rp_id=RP_ID, rp_name="t", user_name="u", user_id=b"user-1", **kwargs)
    return opts, json.loads(webauthn.options_to_json(opts))


def authentication_options(**kwargs: Any) -> tuple[Any, dict[str, Any]]:
    opts = webauthn.generate_authentication_options(rp_id=RP_ID, **kwargs)
    return opts, json.loads(webauthn.options_to_json(opts))


def register(auth: SoftwareAuthenticator, **kwargs: Any) -> Any:
    """Register ``auth`` and verify it as the server would; returns py_webauthn's result."""
    opts, options_json = registration_options()
    return webauthn.verify_registration_response(
        credential=auth.register(options_json),
        expected_challenge=opts.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        **kwargs,
    )


def verify_assertion(registered: Any, response: dict[str, Any], opts: Any, count: int, **kwargs: Any) -> Any:
    return webauthn.verify_authentication_response(
        credential=response,
        expected_challenge=opts.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=registered.credential_public_key,
        credential_current_sign_count=count,
        **kwargs,
    )


@pytest.mark.parametrize("attestation", ["none", "packed"])
@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_round_trip_verifies(algorithm: Any, attestation: Any) -> None:
    auth = SoftwareAuthenticator(algorithm=algorithm, attestation=attestation)
    opts, options_json = registration_options(attestation=AttestationConveyancePreference.DIRECT)
    response = auth.register(options_json)
    assert response["id"] == response["rawId"] == auth.credential_id_b64
    assert response["response"]["publicKeyAlgorithm"] == {"ES256": -7, "EdDSA": -8}[algorithm]
    registered = webauthn.verify_registration_response(
        credential=response,
        expected_challenge=opts.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
    )
    assert registered.credential_id == auth.credential_id
    assert registered.credential_public_key == auth.cose_public_key
    assert registered.sign_count == 0
    assert registered.fmt == attestation
    assert registered.aaguid == "00000000-0000-0000-0000-000000000000"

    count = registered.sign_count
    for expected in (1, 2):
        a_opts, a_json = authentication_options(
            allow_credentials=[PublicKeyCredentialDescriptor(id=auth.credential_id)]
        )
        verified = verify_assertion(registered, auth.authenticate(a_json), a_opts, count)
        assert verified.new_sign_count == expected
        count = verified.new_sign_count


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_cose_key_is_real_cbor(algorithm: Any) -> None:
    key = cbor2.loads(SoftwareAuthenticator(algorithm=algorithm).cose_public_key)
    if algorithm == "ES256":
        assert set(key) == {1, 3, -1, -2, -3}
        assert (key[1], key[3], key[-1]) == (2, -7, 1)
        assert len(key[-2]) == len(key[-3]) == 32
    else:
        assert set(key) == {1, 3, -1, -2}
        assert (key[1], key[3], key[-1]) == (1, -8, 6)
        assert len(key[-2]) == 32


def test_packed_is_self_attestation() -> None:
    auth = SoftwareAuthenticator(attestation="packed")
    _, options_json = registration_options()
    response = auth.register(options_json)["response"]
    att_obj = cbor2.loads(b64url_decode(response["attestationObject"]))
    assert att_obj["fmt"] == "packed"
    assert set(att_obj["attStmt"]) == {"alg", "sig"}
    assert att_obj["attStmt"]["alg"] == -7


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
def test_tampered_signature_fails(algorithm: Any) -> None:
    auth = SoftwareAuthenticator(algorithm=algorithm)
    registered = register(auth)
    opts, options_json = authentication_options()
    response = auth.authenticate(options_json)
    signature = bytearray(b64url_decode(response["response"]["signature"]))
    signature[-1] ^= 0x01
    response["response"]["signature"] = b64url(bytes(signature))
    with pytest.raises(InvalidAuthenticationResponse):
        verify_assertion(registered, response, opts, 0)


def test_wrong_origin_fails() -> None:
    auth = SoftwareAuthenticator()
    opts, options_json = registration_options()
    with pytest.raises(InvalidRegistrationResponse):
        webauthn.verify_registration_response(
            credential=auth.register(options_json, origin="https://evil.example"),
            expected_challenge=opts.challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
        )
    registered = register(auth)
    a_opts, a_json = authentication_options()
    with pytest.raises(InvalidAuthenticationResponse):
        response = auth.authenticate(a_json, origin="https://evil.example")
        verify_assertion(registered, response, a_opts, 0)


def test_forged_client_data_fails() -> None:
    auth = SoftwareAuthenticator()
    registered = register(auth)
    for forgery in (
        {"challenge": b64url(b"other")},
        {"client_data_type": "webauthn.create"},
        {"rp_id": "evil.example"},
    ):
        opts, options_json = authentication_options()
        with pytest.raises(InvalidAuthenticationResponse):
            verify_assertion(registered, auth.authenticate(options_json, **forgery), opts, 0)


def test_exclude_credentials_raises() -> None:
    auth = SoftwareAuthenticator()
    _, options_json = registration_options(exclude_credentials=[PublicKeyCredentialDescriptor(id=auth.credential_id)])
    with pytest.raises(CredentialExcluded):
        auth.register(options_json)
    # Another credential in the list does not stop it.
    _, options_json = registration_options(exclude_credentials=[PublicKeyCredentialDescriptor(id=b"someone-else")])
    auth.register(options_json)


def test_allow_credentials_without_this_credential_raises() -> None:
    auth = SoftwareAuthenticator()
    _, options_json = authentication_options(allow_credentials=[PublicKeyCredentialDescriptor(id=b"someone-else")])
    with pytest.raises(CredentialNotAllowed):
        auth.authenticate(options_json)


def test_counter_options_and_cloned_key() -> None:
    # A key without a counter reports 0 every time, which the server must accept.
    auth = SoftwareAuthenticator(counter_step=0)
    registered = register(auth)
    opts, options_json = authentication_options()
    verified = verify_assertion(registered, auth.authenticate(options_json), opts, 0)
    assert verified.new_sign_count == 0

    auth = SoftwareAuthenticator(sign_count=41)
    registered = register(auth)
    assert registered.sign_count == 41
    opts, options_json = authentication_options()
    verified = verify_assertion(registered, auth.authenticate(options_json), opts, 41)
    assert verified.new_sign_count == 42

    auth.sign_count = 5  # a counter that went backwards looks like a cloned key
    opts, options_json = authentication_options()
    with pytest.raises(InvalidAuthenticationResponse):
        verify_assertion(registered, auth.authenticate(options_json), opts, 42)


def test_flags_reach_the_server() -> None:
    auth = SoftwareAuthenticator(backup_eligible=True, backed_up=True, user_verified=True)
    registered = register(auth, require_user_verification=True)
    assert registered.user_verified
    assert registered.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    assert registered.credential_backed_up

    auth.user_verified = False
    opts, options_json = authentication_options()
    with pytest.raises(InvalidAuthenticationResponse):
        verify_assertion(registered, auth.authenticate(options_json), opts, 0, require_user_verification=True)

    auth.user_present = False
    with pytest.raises(InvalidRegistrationResponse):
        register(auth)


def test_user_handle_is_returned() -> None:
    _, options_json = authentication_options()
    response = SoftwareAuthenticator().authenticate(options_json, user_handle=b"user-1")
    assert b64url_decode(response["response"]["userHandle"]) == b"user-1"


def test_unsupported_cose_alg_is_refused() -> None:
    with pytest.raises(InvalidRegistrationResponse):
        register(SoftwareAuthenticator(cose_alg_override=-65535))


def test_long_credential_id_is_encoded() -> None:
    auth = SoftwareAuthenticator(credential_id=bytes(1024), aaguid=bytes(range(16)))
    _, options_json = registration_options()
    response = auth.register(options_json)
    parsed = parse_attestation_object(b64url_decode(response["response"]["attestationObject"]))
    attested = parsed.auth_data.attested_credential_data
    assert attested is not None
    assert attested.credential_id == bytes(1024)
    assert attested.aaguid == bytes(range(16))
    assert attested.credential_public_key == auth.cose_public_key
