"""A software FIDO2 authenticator and browser client, so tests can run real WebAuthn ceremonies.

It owns the byte layouts (authenticator data, COSE keys, attestation objects, client data) that
a security key and a browser produce, and nothing about keyward: tests feed it the options JSON
the server sends and post back what it returns, exactly as a browser would.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

Algorithm = Literal["ES256", "EdDSA"]
AttestationFormat = Literal["none", "packed"]

# COSE algorithm identifiers (IANA "COSE Algorithms" registry).
COSE_ALG: dict[str, int] = {"ES256": -7, "EdDSA": -8}

# Authenticator data flag bits (WebAuthn §6.1).
FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40

DEFAULT_ORIGIN = "http://localhost:8000"


def b64url(data: bytes) -> str:
    """Base64url without padding: the encoding every binary field of the WebAuthn JSON uses."""
    return bytes_to_base64url(data)


def b64url_decode(s: str) -> bytes:
    """Decode base64url with or without padding, as browsers and py_webauthn both accept."""
    return base64url_to_bytes(s)


@dataclass(frozen=True)
class AttestationCertificate:
    """An authenticator model's attestation key and its certificate chain (leaf first, DER)."""

    private_key: ec.EllipticCurvePrivateKey
    chain: tuple[bytes, ...]


class AuthenticatorError(Exception):
    """The authenticator (or the browser in front of it) refuses the ceremony."""


class CredentialExcluded(AuthenticatorError):
    """Registration refused: the RP listed this credential in excludeCredentials.

    A browser reports this as an ``InvalidStateError`` DOMException.
    """


class CredentialNotAllowed(AuthenticatorError):
    """Authentication refused: allowCredentials is non-empty and does not name this credential.

    A browser would find no matching credential and eventually report ``NotAllowedError``.
    """


class SoftwareAuthenticator:
    """One credential on a pretend security key, plus the browser glue around it.

    Every field is a plain attribute so a test can tamper with it between ceremonies, e.g.
    ``auth.user_present = False`` or ``auth.sign_count = 0`` to fake a cloned key.
    """

    def __init__(
        self,
        *,
        algorithm: Algorithm = "ES256",
        attestation: AttestationFormat = "none",
        attestation_certificate: AttestationCertificate | None = None,
        aaguid: bytes = bytes(16),
        backup_eligible: bool = False,
        backed_up: bool = False,
        user_present: bool = True,
        user_verified: bool = False,
        sign_count: int = 0,
        counter_step: int = 1,
        credential_id: bytes | None = None,
        transports: list[str] | None = None,
        cose_alg_override: int | None = None,
    ) -> None:
        if algorithm not in COSE_ALG:
            raise ValueError(f"unsupported algorithm {algorithm!r}")
        if len(aaguid) != 16:
            raise ValueError("an AAGUID is exactly 16 bytes")
        self.algorithm: Algorithm = algorithm
        self.attestation: AttestationFormat = attestation
        # With a certificate, "packed" is full (basic) attestation; without, self attestation.
        self.attestation_certificate = attestation_certificate
        self.aaguid = aaguid
        self.backup_eligible = backup_eligible
        self.backed_up = backed_up
        self.user_present = user_present
        self.user_verified = user_verified
        self.sign_count = sign_count
        self.counter_step = counter_step
        # No length check: tests need over-long IDs (e.g. 1024 bytes) the server must refuse.
        self.credential_id: bytes = os.urandom(32) if credential_id is None else credential_id
        self.transports: list[str] = ["usb"] if transports is None else list(transports)
        # Written into the COSE key's alg (3) only, so a server sees an algorithm it must refuse
        # while the key itself stays valid.
        self.cose_alg_override = cose_alg_override
        self.private_key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = (
            ec.generate_private_key(ec.SECP256R1()) if algorithm == "ES256" else ed25519.Ed25519PrivateKey.generate()
        )

    # -- the credential ---------------------------------------------------------------------

    @property
    def credential_id_b64(self) -> str:
        """The credential ID as the ``id`` field of the response JSON carries it."""
        return b64url(self.credential_id)

    @property
    def cose_alg(self) -> int:
        """The COSE algorithm the credential key announces (after any override)."""
        if self.cose_alg_override is not None:
            return self.cose_alg_override
        return COSE_ALG[self.algorithm]

    @property
    def cose_public_key(self) -> bytes:
        """The credential public key as a CTAP2-canonical CBOR COSE_Key."""
        public = self.private_key.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            numbers = public.public_numbers()
            key: dict[int, Any] = {
                1: 2,
                3: self.cose_alg,
                -1: 1,  # kty EC2, alg, crv P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        else:
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            key = {1: 1, 3: self.cose_alg, -1: 6, -2: raw}  # kty OKP, alg, crv Ed25519
        return cbor2.dumps(key, canonical=True)

    @property
    def public_key_der(self) -> bytes:
        """SubjectPublicKeyInfo DER, what a browser's ``getPublicKey()`` returns."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        """Sign as WebAuthn requires: ES256 as a DER ECDSA signature, EdDSA as raw 64 bytes."""
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))
        return self.private_key.sign(data)

    # -- ceremonies -------------------------------------------------------------------------

    def register(
        self,
        options: dict[str, Any],
        *,
        origin: str = DEFAULT_ORIGIN,
        rp_id: str | None = None,
        cross_origin: bool | None = None,
        client_data_type: str = "webauthn.create",
        challenge: str | None = None,
    ) -> dict[str, Any]:
        """Answer creation options JSON as ``navigator.credentials.create()`` would.

        Returns ``RegistrationResponseJSON``, i.e. what ``PublicKeyCredential.toJSON()`` gives.
        The keyword options exist to forge what an honest browser never would (another origin,
        RP ID, type or challenge).
        """
        if self._listed(options.get("excludeCredentials")):
            raise CredentialExcluded("this credential is in excludeCredentials")
        if rp_id is None:
            rp_id = options.get("rp", {}).get("id") or _host(origin)
        if challenge is None:
            challenge = _rebase64(options["challenge"])
        client_data = self._client_data(client_data_type, challenge, origin, cross_origin)
        cose_key = self.cose_public_key
        attested = self.aaguid + struct.pack(">H", len(self.credential_id)) + self.credential_id
        auth_data = self._auth_data(rp_id, FLAG_AT) + attested + cose_key
        att_stmt: dict[str, Any] = {}
        if self.attestation == "packed" and self.attestation_certificate is not None:
            # Full attestation: the model's attestation key signs, its certificate chain goes along.
            signed = auth_data + hashlib.sha256(client_data).digest()
            att_stmt = {
                "alg": COSE_ALG["ES256"],
                "sig": self.attestation_certificate.private_key.sign(signed, ec.ECDSA(hashes.SHA256())),
                "x5c": list(self.attestation_certificate.chain),
            }
        elif self.attestation == "packed":
            # Self attestation: the credential key signs; the statement names its real algorithm.
            signature = self.sign(auth_data + hashlib.sha256(client_data).digest())
            att_stmt = {"alg": COSE_ALG[self.algorithm], "sig": signature}
        attestation_object = cbor2.dumps(
            {"fmt": self.attestation, "attStmt": att_stmt, "authData": auth_data}, canonical=True
        )
        return self._credential(
            {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": list(self.transports),
                "publicKeyAlgorithm": self.cose_alg,
                "publicKey": b64url(self.public_key_der),
                "authenticatorData": b64url(auth_data),
            }
        )

    def authenticate(
        self,
        options: dict[str, Any],
        *,
        origin: str = DEFAULT_ORIGIN,
        rp_id: str | None = None,
        cross_origin: bool | None = None,
        client_data_type: str = "webauthn.get",
        challenge: str | None = None,
        user_handle: bytes | None = None,
    ) -> dict[str, Any]:
        """Answer request options JSON as ``navigator.credentials.get()`` would.

        Returns ``AuthenticationResponseJSON``. The counter moves by ``counter_step`` before
        signing, as a real key's does, so a step of 0 imitates a key without a counter.
        """
        allowed = options.get("allowCredentials")
        if allowed and not self._listed(allowed):
            raise CredentialNotAllowed("allowCredentials does not name this credential")
        if rp_id is None:
            rp_id = options.get("rpId") or _host(origin)
        if challenge is None:
            challenge = _rebase64(options["challenge"])
        client_data = self._client_data(client_data_type, challenge, origin, cross_origin)
        self.sign_count += self.counter_step
        auth_data = self._auth_data(rp_id, 0)
        response: dict[str, Any] = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(self.sign(auth_data + hashlib.sha256(client_data).digest())),
        }
        if user_handle is not None:
            response["userHandle"] = b64url(user_handle)
        return self._credential(response)

    # -- byte layouts -----------------------------------------------------------------------

    def _auth_data(self, rp_id: str, extra_flags: int) -> bytes:
        """rpIdHash || flags || signCount: the fixed 37-byte head of authenticator data."""
        flags = extra_flags
        flags |= FLAG_UP if self.user_present else 0
        flags |= FLAG_UV if self.user_verified else 0
        flags |= FLAG_BE if self.backup_eligible else 0
        flags |= FLAG_BS if self.backed_up else 0
        return (
            hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", self.sign_count & 0xFFFFFFFF)
        )

    @staticmethod
    def _client_data(type_: str, challenge: str, origin: str, cross_origin: bool | None) -> bytes:
        """Compact clientDataJSON in the member order browsers emit."""
        data: dict[str, Any] = {"type": type_, "challenge": challenge, "origin": origin}
        if cross_origin is not None:
            data["crossOrigin"] = cross_origin
        return json.dumps(data, separators=(",", ":")).encode()

    def _listed(self, descriptors: list[dict[str, Any]] | None) -> bool:
        """Whether a list of PublicKeyCredentialDescriptorJSON names this credential."""
        return any(b64url_decode(d["id"]) == self.credential_id for d in descriptors or [])

    def _credential(self, response: dict[str, Any]) -> dict[str, Any]:
        """Wrap an authenticator response in the PublicKeyCredential JSON envelope."""
        return {
            "id": self.credential_id_b64,
            "rawId": self.credential_id_b64,
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }


def _rebase64(challenge: str) -> str:
    """Re-encode the challenge as a browser does: decode it, emit unpadded base64url."""
    return b64url(b64url_decode(challenge))


def _host(origin: str) -> str:
    """The RP ID a browser defaults to when the options name none: the origin's host."""
    return urlsplit(origin).hostname or ""
