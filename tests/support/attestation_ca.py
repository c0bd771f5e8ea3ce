"""Test authenticator vendors and a test FIDO Metadata Service: a root that issues packed
attestation certificates per AAGUID (as WebAuthn §8.2.1 requires them), and MDS3 BLOBs signed
by a chain that ends at a test root, so that tests control what the metadata says."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from tests.support.authenticator import AttestationCertificate

# id-fido-gen-ce-aaguid: the AAGUID inside a packed attestation certificate.
_AAGUID_EXTENSION = ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")


def _name(common_name: str, *, unit: str | None = None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Keyward Test Vendor"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    if unit is not None:
        attributes.insert(2, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    return x509.Name(attributes)


def _certificate(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    public_key: Any,
    signing_key: Any,
    ca: bool,
    extensions: list[x509.ExtensionType] = (),
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@dataclass
class VendorRoot:
    """A self-signed root certificate and its key."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    certificate: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        subject = _name(self.name)
        self.certificate = _certificate(
            subject=subject, issuer=subject, public_key=self.key.public_key(), signing_key=self.key, ca=True
        )

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def attestation_certificate(self, *, aaguid: str) -> AttestationCertificate:
        """A packed attestation certificate for one model, issued by this root."""
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _certificate(
            subject=_name(f"Test Authenticator {aaguid[:8]}", unit="Authenticator Attestation"),
            issuer=self.certificate.subject,
            public_key=key.public_key(),
            signing_key=self.key,
            ca=False,
            extensions=[x509.UnrecognizedExtension(_AAGUID_EXTENSION, b"\x04\x10" + uuid.UUID(aaguid).bytes)],
        )
        return AttestationCertificate(private_key=key, chain=(leaf.public_bytes(serialization.Encoding.DER),))

    def signing_certificate(self) -> tuple[rsa.RSAPrivateKey, bytes]:
        """A leaf for signing MDS BLOBs (RS256, as the FIDO Alliance signs them), issued by this root."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        leaf = _certificate(
            subject=_name("Test MDS Signer"),
            issuer=self.certificate.subject,
            public_key=key.public_key(),
            signing_key=self.key,
            ca=False,
        )
        return key, leaf.public_bytes(serialization.Encoding.DER)


def metadata_entry(
    *, aaguid: str, description: str, root: VendorRoot, statuses: list[str] | None = None
) -> dict[str, Any]:
    """An MDS3 entry for a FIDO2 model whose attestation certificates ``root`` issues."""
    reports = [
        {"status": status, "effectiveDate": (datetime(2024, 1, 1) + timedelta(days=index)).date().isoformat()}
        for index, status in enumerate(statuses or ["FIDO_CERTIFIED_L1"])
    ]
    return {
        "aaguid": aaguid,
        "metadataStatement": {
            "legalHeader": "test",
            "aaguid": aaguid,
            "description": description,
            "authenticatorVersion": 1,
            "protocolFamily": "fido2",
            "schema": 3,
            "upv": [{"major": 1, "minor": 0}],
            "authenticationAlgorithms": ["secp256r1_ecdsa_sha256_raw"],
            "publicKeyAlgAndEncodings": ["cose"],
            "attestationTypes": ["basic_full"],
            "userVerificationDetails": [[{"userVerificationMethod": "presence_internal"}]],
            "keyProtection": ["hardware", "secure_element"],
            "matcherProtection": ["on_chip"],
            "attachmentHint": ["external", "wired"],
            "tcDisplay": [],
            "attestationRootCertificates": [base64.b64encode(root.der).decode()],
        },
        "statusReports": reports,
        "timeOfLastStatusChange": reports[-1]["effectiveDate"],
    }


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def signed_blob(*, number: int, entries: list[dict[str, Any]], root: VendorRoot) -> bytes:
    """An MDS3 BLOB: a JWS (RS256) with the signing certificate in x5c, issued by ``root``."""
    key, leaf = root.signing_certificate()
    header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(leaf).decode()]}
    payload = {"legalHeader": "test", "no": number, "nextUpdate": "2099-01-01", "entries": entries}
    message = _b64url(json.dumps(header).encode()) + b"." + _b64url(json.dumps(payload).encode())
    return message + b"." + _b64url(key.sign(message, padding.PKCS1v15(), hashes.SHA256()))
