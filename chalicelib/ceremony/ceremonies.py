"""The two WebAuthn ceremonies, verified with py_webauthn: registration (a new security key)
and authentication (the MFA login). No storage here — callers bring the challenge and the key.

py_webauthn and cryptography are imported inside the functions: only requests that run a
ceremony pay for loading them, not every cold start.

Before py_webauthn's own verification, each response is parsed completely (a malformed one is
a 400 and consumes nothing) and checked step by step where the spec's steps have a reason
code of their own (W3C WebAuthn Level 3, §7.1 and §7.2).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.base.config import settings
from chalicelib.base.errors import (
    CeremonyFailed,
    ChallengeMismatch,
    CredentialIdTooLong,
    CrossOriginRefused,
    InvalidBackupFlags,
    MalformedCredential,
    OriginMismatch,
    RpIdMismatch,
    UnsupportedAlgorithm,
    UserNotPresent,
)

log = logging.getLogger("keyward.ceremonies")

# ES256, EdDSA and RS256: what FIDO2 security keys and platform authenticators use.
SUPPORTED_ALGORITHMS = (-7, -8, -257)
# WebAuthn §5.8.3: a credential ID is at most 1023 bytes.
MAX_CREDENTIAL_ID_BYTES = 1023
TIMEOUT_MS = 300_000


@dataclass(frozen=True)
class ClientData:
    type: str
    challenge: bytes
    origin: str
    cross_origin: bool


@dataclass(frozen=True)
class RegistrationResponse:
    """A parsed RegistrationResponseJSON; nothing verified yet."""

    raw: dict[str, Any]
    credential_id: bytes
    client_data: ClientData
    rp_id_hash: bytes
    user_present: bool
    user_verified: bool
    backup_eligible: bool
    backed_up: bool
    algorithm: int
    transports: tuple[str, ...]
    # What attestation is verified from, against the FIDO Metadata Service (chalicelib.ceremony.metadata).
    attestation_object: bytes
    client_data_json: bytes
    # What the authenticator claims to be, unverified: its AAGUID and attestation certificates.
    aaguid: str
    attestation_certificates: tuple[bytes, ...]


@dataclass(frozen=True)
class AuthenticationResponse:
    """A parsed AuthenticationResponseJSON; nothing verified yet."""

    raw: dict[str, Any]
    credential_id: bytes
    client_data: ClientData
    rp_id_hash: bytes
    user_present: bool
    user_verified: bool
    backup_eligible: bool
    backed_up: bool
    sign_count: int
    user_handle: bytes | None


@dataclass(frozen=True)
class VerifiedRegistration:
    credential_id: bytes
    public_key: bytes
    algorithm: int
    sign_count: int
    aaguid: str
    attestation_format: str
    transports: tuple[str, ...]
    backup_eligible: bool
    backed_up: bool
    user_verified: bool
    attestation_object: bytes
    client_data_json: bytes


@dataclass(frozen=True)
class KnownCredential:
    """A credential the user already holds, for excludeCredentials / allowCredentials."""

    credential_id: bytes
    transports: Sequence[str]


def key_id_for(credential_id: bytes) -> str:
    """The key ID people see and URLs use: 128 bits of the credential ID's SHA-256, base64url."""
    from webauthn.helpers import bytes_to_base64url

    return bytes_to_base64url(hashlib.sha256(credential_id).digest()[:16])


def _raw_id(credential: object) -> bytes:
    from webauthn.helpers import base64url_to_bytes

    if not isinstance(credential, dict):
        raise MalformedCredential("'credential' must be the JSON form of a PublicKeyCredential.")
    raw_id = credential.get("rawId")
    if not isinstance(raw_id, str):
        raise MalformedCredential("'credential.rawId' must be a base64url string.")
    # Refuse an oversized ID before decoding anything else of it.
    if len(raw_id) > (MAX_CREDENTIAL_ID_BYTES * 4 + 2) // 3:
        raise CredentialIdTooLong(f"A credential ID is at most {MAX_CREDENTIAL_ID_BYTES} bytes.")
    try:
        credential_id = base64url_to_bytes(raw_id)
    except Exception:
        raise MalformedCredential("'credential.rawId' is not valid base64url.") from None
    if not credential_id:
        raise MalformedCredential("'credential.rawId' is empty.")
    if len(credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise CredentialIdTooLong(f"A credential ID is at most {MAX_CREDENTIAL_ID_BYTES} bytes.")
    if credential.get("id") != raw_id.rstrip("="):
        raise MalformedCredential("'credential.id' and 'credential.rawId' differ.")
    return credential_id


def _client_data(raw: bytes) -> ClientData:
    from webauthn.helpers import parse_client_data_json

    parsed = parse_client_data_json(raw)
    document = json.loads(raw)
    cross_origin = document.get("crossOrigin", False)
    if not isinstance(parsed.type, str) or not isinstance(parsed.origin, str) or not isinstance(cross_origin, bool):
        raise ValueError("clientDataJSON fields have the wrong types")
    return ClientData(type=parsed.type, challenge=parsed.challenge, origin=parsed.origin, cross_origin=cross_origin)


def parse_registration(*, credential: object) -> RegistrationResponse:
    """Parse a RegistrationResponseJSON completely: JSON, base64url, clientDataJSON, CBOR.

    Raises:
        MalformedCredential, CredentialIdTooLong: the response cannot be a credential.
    """
    from fido2.webauthn import AttestationObject
    from webauthn.helpers import (
        decode_credential_public_key,
        parse_attestation_object,
        parse_registration_credential_json,
    )

    credential_id = _raw_id(credential)
    assert isinstance(credential, dict)
    # Attacker-controlled bytes go through JSON, base64url, CBOR and COSE decoders that raise
    # many kinds of exception; any of them means the response is not a credential at all.
    try:
        parsed = parse_registration_credential_json(credential)
        client_data = _client_data(parsed.response.client_data_json)
        attestation = parse_attestation_object(parsed.response.attestation_object)
        # python-fido2 reads the same bytes again for the metadata (chalicelib.ceremony.metadata), and its
        # CBOR decoder is the stricter one (bytes after the map, say): both must accept them here,
        # before anything is read or used, rather than the second fail once the ceremony ran.
        strict = AttestationObject(parsed.response.attestation_object)
        # "none" is defined with an empty statement (WebAuthn §8.7); py_webauthn reads only the
        # statement fields it knows, so anything else in it would pass unseen.
        if strict.fmt == "none" and strict.att_stmt:
            raise ValueError("a 'none' attestation statement must be empty")
        attested = attestation.auth_data.attested_credential_data
        if attested is None:
            raise ValueError("no attested credential data")
        public_key = decode_credential_public_key(attested.credential_public_key)
        if attested.credential_id != credential_id:
            raise ValueError("authenticator data names another credential ID")
    except Exception as error:
        log.info("malformed registration response: %s", error)
        raise MalformedCredential("The registration response could not be parsed.") from None
    flags = attestation.auth_data.flags
    return RegistrationResponse(
        raw=credential,
        credential_id=credential_id,
        client_data=client_data,
        rp_id_hash=attestation.auth_data.rp_id_hash,
        user_present=flags.up,
        user_verified=flags.uv,
        backup_eligible=flags.be,
        backed_up=flags.bs,
        algorithm=int(public_key.alg),
        transports=tuple(str(getattr(t, "value", t)) for t in parsed.response.transports or ()),
        attestation_object=parsed.response.attestation_object,
        client_data_json=parsed.response.client_data_json,
        aaguid=str(uuid.UUID(bytes=bytes(attested.aaguid))),
        # Only byte strings can be certificates; anything else fails verification later, as it should.
        attestation_certificates=_certificates(attestation.att_stmt.x5c),
    )


def _certificates(x5c: object) -> tuple[bytes, ...]:
    """The attestation statement's certificates, unverified: only a list of byte strings can be
    one; anything else fails the attestation's verification later, as it should."""
    if not isinstance(x5c, (list, tuple)):
        return ()
    return tuple(bytes(der) for der in x5c if isinstance(der, (bytes, bytearray)))


def parse_authentication(*, credential: object) -> AuthenticationResponse:
    """Parse an AuthenticationResponseJSON completely: JSON, base64url, clientDataJSON, authenticatorData.

    Raises:
        MalformedCredential, CredentialIdTooLong: the response cannot be an assertion.
    """
    from webauthn.helpers import (
        parse_authentication_credential_json,
        parse_authenticator_data,
    )

    credential_id = _raw_id(credential)
    assert isinstance(credential, dict)
    try:
        parsed = parse_authentication_credential_json(credential)
        client_data = _client_data(parsed.response.client_data_json)
        auth_data = parse_authenticator_data(parsed.response.authenticator_data)
        if not parsed.response.signature:
            raise ValueError("empty signature")
    except Exception as error:
        log.info("malformed authentication response: %s", error)
        raise MalformedCredential("The authentication response could not be parsed.") from None
    return AuthenticationResponse(
        raw=credential,
        credential_id=credential_id,
        client_data=client_data,
        rp_id_hash=auth_data.rp_id_hash,
        user_present=auth_data.flags.up,
        user_verified=auth_data.flags.uv,
        backup_eligible=auth_data.flags.be,
        backed_up=auth_data.flags.bs,
        sign_count=auth_data.sign_count,
        user_handle=parsed.response.user_handle or None,
    )


def _check_common(
    *,
    client_data: ClientData,
    expected_type: str,
    expected_challenge: bytes,
    rp_id_hash: bytes,
    user_present: bool,
    backup_eligible: bool,
    backed_up: bool,
) -> None:
    """The steps both ceremonies share, each with its own reason code (§7.1 steps 7–16, §7.2 steps 11–18)."""
    config = settings()
    if client_data.type != expected_type:
        raise ChallengeMismatch(f"The response is for '{client_data.type}', expected '{expected_type}'.")
    if client_data.challenge != expected_challenge:
        raise ChallengeMismatch("The response signs a different challenge.")
    if client_data.origin not in config.allowed_origins:
        raise OriginMismatch(f"Origin '{client_data.origin}' is not allowed.")
    if client_data.cross_origin:
        raise CrossOriginRefused("Ceremonies from a cross-origin iframe are refused.")
    if rp_id_hash != hashlib.sha256(config.rp_id.encode()).digest():
        raise RpIdMismatch("The response is for another relying party ID.")
    if not user_present:
        raise UserNotPresent("The security key did not confirm user presence.")
    if backed_up and not backup_eligible:
        raise InvalidBackupFlags("The authenticator claims a backup of a credential that cannot be backed up.")


def registration_options(
    *,
    challenge: bytes,
    user_handle: bytes,
    user_name: str,
    display_name: str,
    exclude: Sequence[KnownCredential],
    user_verification: str = "discouraged",
    attestation: str = "none",
    roaming_only: bool = False,
) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptionsJSON for adding a security key.

    Args:
        user_verification: the organization's policy: "discouraged", "preferred" or "required".
        attestation: "none", or "direct" when the organization verifies models.
        roaming_only: ask for a roaming (cross-platform) key, not the device's own passkey store.
    """
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers.cose import COSEAlgorithmIdentifier
    from webauthn.helpers.structs import (
        AttestationConveyancePreference,
        AuthenticatorAttachment,
        AuthenticatorSelectionCriteria,
        AuthenticatorTransport,
        PublicKeyCredentialDescriptor,
        PublicKeyCredentialHint,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    config = settings()
    options = generate_registration_options(
        rp_id=config.rp_id,
        rp_name=config.rp_name,
        user_id=user_handle,
        user_name=user_name,
        user_display_name=display_name,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference(attestation),
        # A second factor: possession of the key is what counts; no passkey (resident key) needed,
        # and a PIN only where the organization's policy asks for user verification.
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement(user_verification),
            authenticator_attachment=AuthenticatorAttachment.CROSS_PLATFORM if roaming_only else None,
        ),
        hints=[PublicKeyCredentialHint.SECURITY_KEY],
        exclude_credentials=[
            PublicKeyCredentialDescriptor(
                id=known.credential_id, transports=_transports(known.transports, AuthenticatorTransport)
            )
            for known in exclude
        ],
        supported_pub_key_algs=[COSEAlgorithmIdentifier(alg) for alg in SUPPORTED_ALGORITHMS],
    )
    return json.loads(options_to_json(options))


def authentication_options(
    *,
    challenge: bytes,
    allow: Sequence[KnownCredential],
    user_verification: str = "discouraged",
) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptionsJSON for the MFA login, listing only the user's keys."""
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers.structs import (
        AuthenticatorTransport,
        PublicKeyCredentialDescriptor,
        UserVerificationRequirement,
    )

    options = generate_authentication_options(
        rp_id=settings().rp_id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=[
            PublicKeyCredentialDescriptor(
                id=known.credential_id, transports=_transports(known.transports, AuthenticatorTransport)
            )
            for known in allow
        ],
        user_verification=UserVerificationRequirement(user_verification),
    )
    return json.loads(options_to_json(options))


def _transports(names: Sequence[str], enum: Any) -> list[Any] | None:
    known = [enum(name) for name in names if name in {member.value for member in enum}]
    return known or None


def verify_registration(*, response: RegistrationResponse, expected_challenge: bytes) -> VerifiedRegistration:
    """Verify a registration ceremony (§7.1), attestation included.

    Raises:
        ChallengeMismatch, OriginMismatch, CrossOriginRefused, RpIdMismatch, UserNotPresent,
        InvalidBackupFlags, UnsupportedAlgorithm, CeremonyFailed.
    """
    from webauthn import verify_registration_response
    from webauthn.helpers.cose import COSEAlgorithmIdentifier
    from webauthn.helpers.exceptions import WebAuthnException

    _check_common(
        client_data=response.client_data,
        expected_type="webauthn.create",
        expected_challenge=expected_challenge,
        rp_id_hash=response.rp_id_hash,
        user_present=response.user_present,
        backup_eligible=response.backup_eligible,
        backed_up=response.backed_up,
    )
    if response.algorithm not in SUPPORTED_ALGORITHMS:
        raise UnsupportedAlgorithm(f"COSE algorithm {response.algorithm} is not supported.")
    config = settings()
    try:
        verified = verify_registration_response(
            credential=response.raw,
            expected_challenge=expected_challenge,
            expected_rp_id=config.rp_id,
            expected_origin=list(config.allowed_origins),
            supported_pub_key_algs=[COSEAlgorithmIdentifier(alg) for alg in SUPPORTED_ALGORITHMS],
        )
    except (WebAuthnException, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        # py_webauthn reads an attestation statement's fields as it finds them: a malformed one can
        # fail on any of these inside the library.
        log.info("registration did not verify: %s", error)
        raise CeremonyFailed("The security key's registration did not verify.") from None
    return VerifiedRegistration(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        algorithm=response.algorithm,
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        attestation_format=str(getattr(verified.fmt, "value", verified.fmt)),
        transports=response.transports,
        backup_eligible=response.backup_eligible,
        backed_up=verified.credential_backed_up,
        user_verified=verified.user_verified,
        attestation_object=response.attestation_object,
        client_data_json=response.client_data_json,
    )


def verify_authentication(*, response: AuthenticationResponse, expected_challenge: bytes, public_key: bytes) -> None:
    """Verify an authentication ceremony's assertion (§7.2) against the stored public key.

    The signature counter is left to the caller, who compares it with the stored one inside
    the same conditional write that records it.

    Raises:
        ChallengeMismatch, OriginMismatch, CrossOriginRefused, RpIdMismatch, UserNotPresent,
        InvalidBackupFlags, CeremonyFailed.
    """
    from webauthn import verify_authentication_response
    from webauthn.helpers.exceptions import WebAuthnException

    _check_common(
        client_data=response.client_data,
        expected_type="webauthn.get",
        expected_challenge=expected_challenge,
        rp_id_hash=response.rp_id_hash,
        user_present=response.user_present,
        backup_eligible=response.backup_eligible,
        backed_up=response.backed_up,
    )
    config = settings()
    try:
        verify_authentication_response(
            credential=response.raw,
            expected_challenge=expected_challenge,
            expected_rp_id=config.rp_id,
            expected_origin=list(config.allowed_origins),
            credential_public_key=public_key,
            # Zero skips py_webauthn's counter check; keyward checks it against the stored
            # count itself, so that a regression gets its own reason code and log line.
            credential_current_sign_count=0,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError, IndexError) as error:
        log.info("assertion did not verify: %s", error)
        raise CeremonyFailed("The security key's signature did not verify.") from None


def sign_count_regressed(*, stored: int, presented: int) -> bool:
    """§7.2 step 21: a counter that does not increase signals a cloned authenticator."""
    return (stored > 0 or presented > 0) and presented <= stored
