"""The self-signed X.509 certificate published with each signing key (the JWK's ``x5c``).

Entra ID's external authentication method profile requires every key of the provider's JWKS to
carry ``x5c``, an X.509 representation of the key. The certificate is not a trust anchor: a relying
party trusts the key because it is in the JWKS fetched from the issuer over TLS, and the
certificate says nothing the JWK does not. So it is self-signed by the key it holds, names the
provider as subject and issuer, may not sign other certificates (basic constraints CA false, key
usage digitalSignature only) and has no well-defined expiration (RFC 5280 §4.1.2.5's
99991231235959Z): the key's life is decided by rotation and the JWKS's publication, and a second
end date would be an expiry nobody watches, breaking sign-in years later while the key still signs.

The private key signs the certificate where it is: a KMS key never leaves KMS, so the certificate's
``TBSCertificate`` is built with the real public key (``cryptography`` signs it with a throwaway key
of the same type, and only its TBS bytes are kept), the key's signer signs those bytes, and the
DER ``Certificate`` is assembled around that signature (RFC 5280 §4.1).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

# RFC 5280 §4.1.2.5: the notAfter of a certificate with no well-defined expiration date.
NO_EXPIRATION = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
# A relying party whose clock is behind keyward's must not find the certificate not yet valid.
BACKDATED_BY = timedelta(minutes=2)
SUBJECT_ORGANIZATION = "keyward OpenID provider"
# X.520's upper bound on a common name (RFC 5280 Appendix A, ub-common-name).
COMMON_NAME_LIMIT = 64

# The AlgorithmIdentifier DER of each algorithm's certificate signature, exactly as cryptography
# writes it into the TBSCertificate (RFC 5280 §4.1.1.2: the two must be equal):
# sha256WithRSAEncryption with NULL parameters (RFC 4055 §5), ecdsa-with-SHA256 without (RFC 5758 §3.2).
SIGNATURE_ALGORITHMS = {
    "RS256": bytes.fromhex("300d06092a864886f70d01010b0500"),
    "ES256": bytes.fromhex("300a06082a8648ce3d040302"),
}

# What signs a certificate: the signature of the given bytes with SHA-256, PKCS#1 v1.5 for RSA and
# DER-encoded ECDSA for EC keys (what X.509 wants, and what KMS answers).
Signer = Callable[[bytes], bytes]


def self_signed(
    *,
    algorithm: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    issuer: str,
    now: datetime,
    sign: Signer,
) -> bytes:
    """The DER certificate of ``public_key``, signed by ``sign`` (the key's own private key).

    Args:
        algorithm: the key's JWS algorithm, "RS256" or "ES256".
        issuer: the provider's issuer URL; its host names the certificate's subject.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    host = urlsplit(issuer).hostname or ""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, SUBJECT_ORGANIZATION)]
    if 0 < len(host) <= COMMON_NAME_LIMIT:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, host))
    name = x509.Name(attributes)
    draft = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now.replace(microsecond=0) - BACKDATED_BY)
        .not_valid_after(NO_EXPIRATION)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_digital_signature_only(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(_throwaway_key(algorithm), hashes.SHA256())
    )
    return _certificate(draft.tbs_certificate_bytes, SIGNATURE_ALGORITHMS[algorithm], sign(draft.tbs_certificate_bytes))


def jwk_parameters(certificate: bytes) -> dict[str, Any]:
    """The JWK's ``x5c`` (standard base64 DER, RFC 7517 §4.7: not base64url), ``x5t`` (base64url
    SHA-1 thumbprint, §4.8) and ``x5t#S256`` (base64url SHA-256 thumbprint, §4.9)."""
    return {
        "x5c": [base64.b64encode(certificate).decode("ascii")],
        "x5t": _b64url(hashlib.sha1(certificate, usedforsecurity=False).digest()),
        "x5t#S256": _b64url(hashlib.sha256(certificate).digest()),
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _digital_signature_only() -> x509.KeyUsage:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


@functools.cache
def _throwaway_key(algorithm: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """A key of the algorithm's type, only for cryptography to write the TBSCertificate with the
    right signature algorithm; what it signs is discarded, so its size does not matter."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(tbs_certificate: bytes, signature_algorithm: bytes, signature: bytes) -> bytes:
    """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }."""
    # A BIT STRING's first content octet counts the unused bits of its last octet: none here.
    return _der(0x30, tbs_certificate + signature_algorithm + _der(0x03, b"\x00" + signature))


def _der(tag: int, content: bytes) -> bytes:
    """A DER element: its tag, its length in the definite form (X.690 §8.1.3), its content."""
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content
