"""The OpenID provider's signing keys: tokens verified with PyJWT against the JWKS for both
algorithms, rotation that keeps the old public key published until its tokens expired (with a
controlled clock), concurrent rotations, keys in KMS on moto, each key's self-signed certificate
(``x5c``, which Entra ID requires), and ``python -m keyward keys``."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest

from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.errors import ConcurrentChange, ConfigurationError, SigningKeyUnavailable
from chalicelib.base.models import SigningKey
from chalicelib.provider import certificates, signing
from keyward.__main__ import main


class Clock:
    """keyward's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = clock.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def time(monkeypatch: pytest.MonkeyPatch) -> Clock:
    controlled = Clock()
    monkeypatch.setattr(clock, "now", controlled)
    return controlled


def _claims(*, lifetime: timedelta = signing.ID_TOKEN_LIFETIME, audience: str = "app") -> dict[str, Any]:
    now = clock.now()
    return {
        "iss": settings().provider_issuer,
        "aud": audience,
        "sub": "bob",
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }


def _verified_with_jwks(token: str, *, audience: str = "app") -> dict[str, Any]:
    """What a relying party does: pick the JWKS key by ``kid`` and verify with PyJWT."""
    keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(signing.jwks()).keys}
    header = jwt.get_unverified_header(token)
    if header["kid"] not in keys:
        raise jwt.InvalidTokenError(f"kid {header['kid']} is not in the JWKS")
    return jwt.decode(
        token,
        key=keys[header["kid"]].key,
        algorithms=[header["alg"]],
        audience=audience,
        issuer=settings().provider_issuer,
        # The clock is keyward's, moved by the test; PyJWT's is the machine's.
        options={"verify_exp": False, "verify_iat": False},
    )


def _certificate_of(jwk: dict[str, Any]) -> Any:
    """The certificate of a published JWK, checked as a relying party that reads ``x5c`` may: its
    key is the JWK's, it is signed by that key, and the thumbprints are its own (RFC 7517 §4.7-4.9)."""
    from asn1crypto import x509 as asn1_x509
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    [encoded] = jwk["x5c"]
    der = base64.b64decode(encoded, validate=True)  # standard base64: a url-safe '-' or '_' is refused
    certificate = x509.load_der_x509_certificate(der)

    public_key = certificate.public_key()
    assert public_key.public_numbers() == jwt.PyJWK(jwk).key.public_numbers(), "the certificate holds another key"
    if isinstance(public_key, rsa.RSAPublicKey):
        assert jwk["kty"] == "RSA" and certificate.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSA_WITH_SHA256
        public_key.verify(certificate.signature, certificate.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey) and jwk["kty"] == "EC"
        assert certificate.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
        public_key.verify(certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    certificate.verify_directly_issued_by(certificate)
    # RFC 5280 §4.1.1.2: the signature algorithm inside the signed part is the one the signature uses.
    parsed = asn1_x509.Certificate.load(der)
    assert parsed["tbs_certificate"]["signature"].dump() == parsed["signature_algorithm"].dump()

    assert jwk["x5t"] == jwt.utils.base64url_encode(hashlib.sha1(der).digest()).decode()
    assert jwk["x5t#S256"] == jwt.utils.base64url_encode(hashlib.sha256(der).digest()).decode()
    return certificate


def _stored_jwk(kid: str) -> dict[str, Any]:
    return dict(json.loads(SigningKey.get(kid, consistent_read=True).public_jwk))


def _as_recorded_before_certificates(kid: str) -> dict[str, Any]:
    """Strip a stored key's certificate, as keys were recorded before keyward published one."""
    jwk = {name: value for name, value in _stored_jwk(kid).items() if not name.startswith("x5")}
    SigningKey(kid).update(actions=[SigningKey.public_jwk.set(json.dumps(jwk))])
    signing.forget_keys()
    return jwk


def _current(algorithm: str) -> list[SigningKey]:
    return [
        key for key in SigningKey.scan(consistent_read=True) if key.state == "current" and key.algorithm == algorithm
    ]


# --- signing and the JWKS --------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_token_verifies_against_the_jwks_and_with_verify(algorithm):
    token = signing.sign(_claims(), algorithm=algorithm, typ="JWT")

    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == (algorithm, "JWT")
    assert _verified_with_jwks(token)["sub"] == "bob"
    assert signing.verify(token, typ="JWT", audience="app")["sub"] == "bob"
    [published] = [key for key in signing.jwks()["keys"] if key["kid"] == header["kid"]]
    assert published["alg"] == algorithm and published["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(published), "a private part in the JWKS"


def test_verify_refuses_a_token_of_another_type_audience_or_issuer():
    token = signing.sign(_claims(), typ="at+jwt")
    with pytest.raises(jwt.InvalidTokenError):
        signing.verify(token, typ="JWT")
    with pytest.raises(jwt.InvalidAudienceError):
        signing.verify(token, audience="other-app")
    foreign = signing.sign({**_claims(), "iss": "https://elsewhere.example"})
    with pytest.raises(jwt.InvalidIssuerError):
        signing.verify(foreign)


def test_a_token_signed_by_a_key_the_provider_does_not_publish_is_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa

    signing.sign(_claims())  # the provider has a key
    forged = jwt.encode(
        _claims(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": signing.current_key("RS256").kid},
    )
    with pytest.raises(jwt.InvalidSignatureError):
        signing.verify(forged)
    unknown = jwt.encode(
        _claims(), rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", headers={"kid": "x"}
    )
    with pytest.raises(jwt.InvalidTokenError, match="not signed by a key this provider publishes"):
        signing.verify(unknown)


def test_an_unknown_algorithm_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        signing.sign(_claims(), algorithm="HS256")


def test_signing_reads_the_key_set_at_most_once_a_minute(monkeypatch):
    scans = 0
    scan = SigningKey.scan

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal scans
        scans += 1
        return scan(*args, **kwargs)

    signing.sign(_claims())
    monkeypatch.setattr(SigningKey, "scan", counted)
    for _ in range(5):
        signing.sign(_claims())
    assert scans == 0
    later = signing.time.monotonic() + signing.KEY_CACHE_TTL.total_seconds() + 1
    monkeypatch.setattr(signing.time, "monotonic", lambda: later)
    signing.sign(_claims())
    assert scans == 1


def test_a_process_that_read_the_keys_before_a_rotation_elsewhere_verifies_the_new_keys_tokens():
    signing.sign(_claims())
    stale = signing._key_set
    signing.rotate(algorithm="RS256")
    token = signing.sign(_claims())
    signing._key_set = stale  # as in a process that has not read the table since
    assert signing.verify(token)["sub"] == "bob"


def test_the_local_stack_keeps_its_key_files_across_empty_tables():
    first = signing.current_key("ES256")
    SigningKey(first.kid).delete()
    signing.forget_keys()
    assert signing.current_key("ES256").kid == first.kid
    assert (Path(settings().provider_key_dir or "") / f"{first.kid}.pem").exists()


# --- each key's certificate (x5c) -------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_every_published_key_carries_its_self_signed_certificate(algorithm):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    kid = signing.current_key(algorithm).kid
    [jwk] = [key for key in signing.jwks()["keys"] if key["kid"] == kid]

    certificate = _certificate_of(jwk)
    name = certificate.subject
    assert certificate.issuer == name
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "keyward OpenID provider"
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"  # the local issuer's host
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert certificate.not_valid_before_utc <= clock.now() < certificate.not_valid_after_utc
    assert certificate.not_valid_after_utc == certificates.NO_EXPIRATION
    # What the JWKS publishes is what the key's item holds: no request makes a certificate.
    assert _stored_jwk(kid) == jwk


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_the_certificate_is_assembled_as_cryptography_itself_encodes_a_certificate(algorithm):
    """The DER written around a signature from elsewhere (KMS) is byte for byte cryptography's own."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private_key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "keyward")])
    own = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(clock.now())
        .not_valid_after(certificates.NO_EXPIRATION)
        .sign(private_key, hashes.SHA256())
    )
    assembled = certificates._certificate(
        own.tbs_certificate_bytes, certificates.SIGNATURE_ALGORITHMS[algorithm], own.signature
    )
    assert assembled == own.public_bytes(serialization.Encoding.DER)


def test_a_long_length_is_written_in_the_definite_long_form():
    assert certificates._der(0x04, b"x" * 0x7F)[:2] == bytes([0x04, 0x7F])
    assert certificates._der(0x04, b"x" * 0x80)[:3] == bytes([0x04, 0x81, 0x80])
    assert certificates._der(0x04, b"x" * 0x1234)[:4] == bytes([0x04, 0x82, 0x12, 0x34])


def test_an_issuer_host_too_long_for_a_common_name_leaves_the_organization_alone():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private_key = ec.generate_private_key(ec.SECP256R1())
    host = "a" * 60 + ".example.com"
    der = certificates.self_signed(
        algorithm="ES256",
        public_key=private_key.public_key(),
        issuer=f"https://{host}/api",
        now=clock.now(),
        sign=lambda tbs: private_key.sign(tbs, ec.ECDSA(hashes.SHA256())),
    )
    name = x509.load_der_x509_certificate(der).subject
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME) == []
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "keyward OpenID provider"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_key_recorded_without_a_certificate_gets_one_once_when_first_read(algorithm, monkeypatch):
    kid = signing.current_key(algorithm).kid
    bare = _as_recorded_before_certificates(kid)
    # Signing and verifying only read the keys: the JWKS's reader certifies.
    assert signing.verify(signing.sign(_claims(), algorithm=algorithm))["sub"] == "bob"
    assert _stored_jwk(kid) == bare

    [published] = [key for key in signing.jwks()["keys"] if key["kid"] == kid]

    _certificate_of(published)
    assert {name: value for name, value in published.items() if not name.startswith("x5")} == bare
    assert _stored_jwk(kid) == published

    def refused(*_: Any, **__: Any) -> Any:
        raise AssertionError("a second certificate for the key")

    monkeypatch.setattr(certificates, "self_signed", refused)
    signing.forget_keys()
    assert published in signing.jwks()["keys"]
    assert signing.verify(signing.sign(_claims(), algorithm=algorithm))["sub"] == "bob"


def test_of_two_processes_certifying_a_key_at_once_both_publish_the_stored_certificate(monkeypatch):
    kid = signing.current_key("RS256").kid
    _as_recorded_before_certificates(kid)
    certified = signing._certified_jwk
    theirs: list[str] = []

    def another_process_first(jwk: dict[str, Any], **arguments: Any) -> str:
        if not theirs:
            # The other process reads the same bare item and writes its certificate first.
            theirs.append(certified(jwk, **arguments))
            SigningKey(kid).update(actions=[SigningKey.public_jwk.set(theirs[0])])
        return certified(jwk, **arguments)

    monkeypatch.setattr(signing, "_certified_jwk", another_process_first)
    [published] = [key for key in signing.jwks()["keys"] if key["kid"] == kid]

    assert published == json.loads(theirs[0]) == _stored_jwk(kid)
    _certificate_of(published)


def test_a_key_that_cannot_be_certified_now_is_published_without_it_and_certified_later(monkeypatch):
    kid = signing.current_key("ES256").kid
    bare = _as_recorded_before_certificates(kid)
    key_file = Path(settings().provider_key_dir or "") / f"{kid}.pem"
    kept = key_file.read_bytes()
    key_file.unlink()
    signing._private_key.cache_clear()
    try:
        assert {key["kid"]: key for key in signing.jwks()["keys"]}[kid] == bare
        assert _stored_jwk(kid) == bare
    finally:
        key_file.write_bytes(kept)
    _certificate_of({key["kid"]: key for key in signing.jwks()["keys"]}[kid])


def test_a_retired_key_still_published_gets_its_certificate_too():
    old = signing.current_key("RS256").kid
    _as_recorded_before_certificates(old)
    signing.rotate(algorithm="RS256")
    published = {key["kid"]: key for key in signing.jwks()["keys"]}
    _certificate_of(published[old])
    assert SigningKey.get(old, consistent_read=True).state == "retired"


# --- rotation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_rotation_keeps_the_old_key_published_until_its_tokens_expired_then_drops_it(time, algorithm):
    # A token that outlives the key's publication: only the key decides whether it verifies.
    old_token = signing.sign(_claims(lifetime=timedelta(days=1)), algorithm=algorithm)
    old = signing.current_key(algorithm)

    rotation = signing.rotate(algorithm=algorithm)

    assert [key.kid for key in rotation.retired] == [old.kid]
    assert rotation.current.kid != old.kid
    published_until = time.now + signing.RETIRED_KEY_PUBLISHED_FOR
    stored = SigningKey.get(old.kid, consistent_read=True)
    assert (stored.state, stored.retired_at, stored.published_until) == ("retired", time.now, published_until)
    assert published_until >= time.now + signing.MAX_TOKEN_LIFETIME + signing.KEY_CACHE_TTL
    assert [key.kid for key in _current(algorithm)] == [rotation.current.kid]

    new_token = signing.sign(_claims(), algorithm=algorithm)
    assert jwt.get_unverified_header(new_token)["kid"] == rotation.current.kid
    published = {key["kid"]: key for key in signing.jwks()["keys"]}
    assert {old.kid, rotation.current.kid} <= set(published)
    old_certificate, new_certificate = (_certificate_of(published[kid]) for kid in (old.kid, rotation.current.kid))
    assert old_certificate.serial_number != new_certificate.serial_number
    assert _verified_with_jwks(old_token)["sub"] == "bob"
    assert signing.verify(old_token)["sub"] == "bob"

    time.advance(signing.RETIRED_KEY_PUBLISHED_FOR - timedelta(seconds=1))
    assert signing.verify(old_token)["sub"] == "bob"
    time.advance(timedelta(seconds=1))
    assert old.kid not in {key["kid"] for key in signing.jwks()["keys"]}
    with pytest.raises(jwt.InvalidTokenError):
        signing.verify(old_token)
    with pytest.raises(jwt.InvalidTokenError):
        _verified_with_jwks(old_token)
    assert _verified_with_jwks(new_token)["sub"] == "bob"


def test_a_rotation_leaves_the_other_algorithms_key_alone():
    es256 = signing.current_key("ES256")
    signing.rotate(algorithm="RS256")
    assert [key.kid for key in _current("ES256")] == [es256.kid]


def test_of_two_concurrent_rotations_one_fails_and_changes_nothing(monkeypatch):
    old = signing.current_key("RS256")
    make_key = signing._new_local_key
    made: list[SigningKey] = []
    winner: list[signing.Rotation] = []

    def meanwhile_another_rotation(algorithm: str, now: datetime) -> SigningKey:
        key = make_key(algorithm, now)
        made.append(key)
        if len(made) == 1:
            # The other rotation reads the same current key, and commits first.
            winner.append(signing.rotate(algorithm=algorithm))
        return key

    monkeypatch.setattr(signing, "_new_local_key", meanwhile_another_rotation)
    with pytest.raises(ConcurrentChange):
        signing.rotate(algorithm="RS256")

    [current] = _current("RS256")
    assert current.kid == winner[0].current.kid
    assert SigningKey.get(old.kid, consistent_read=True).state == "retired"
    loser = made[0]
    assert SigningKey.count(loser.kid, consistent_read=True) == 0
    assert not (Path(settings().provider_key_dir or "") / loser.private_key_ref).exists(), "the loser's key file stays"


# --- keys in KMS (moto) ------------------------------------------------------------------------------


def _kms() -> Any:
    return boto3.client("kms", endpoint_url=settings().aws_endpoint, region_name=settings().region)


@pytest.fixture
def on_aws(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A deployed stage's signing: no key directory, the template's KMS keys of both algorithms."""
    kms = _kms()
    arns = {
        algorithm: kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=spec)["KeyMetadata"]["Arn"]
        for algorithm, spec in signing.KMS_KEY_SPECS.items()
    }
    replaced = dataclasses.replace(
        settings(), provider_key_dir=None, provider_rs256_key=arns["RS256"], provider_es256_key=arns["ES256"]
    )
    monkeypatch.setattr(signing, "settings", lambda: replaced)
    return arns


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_the_templates_kms_key_is_recorded_on_first_use_and_signs(on_aws, monkeypatch, algorithm):
    token = signing.sign(_claims(), algorithm=algorithm)

    [key] = _current(algorithm)
    assert key.private_key_ref == on_aws[algorithm]
    assert _verified_with_jwks(token)["sub"] == "bob"
    # Its certificate holds the KMS key's public key and was signed in KMS by that key.
    [published] = [jwk for jwk in signing.jwks()["keys"] if jwk["kid"] == key.kid]
    public_key = _certificate_of(published).public_key()
    assert public_key.public_numbers() == _kms_public_key(on_aws[algorithm]).public_numbers()
    assert signing.verify(token)["sub"] == "bob"
    if algorithm == "ES256":
        assert len(jwt.utils.base64url_decode(token.rsplit(".", 1)[1])) == 64, "r || s, not DER"

    # The public key was stored: no request asks KMS for it again.
    def refused(**_: Any) -> Any:
        raise AssertionError("GetPublicKey on a request")

    monkeypatch.setattr(signing._kms(), "get_public_key", refused)
    signing.forget_keys()
    assert signing.verify(signing.sign(_claims(), algorithm=algorithm))["sub"] == "bob"


def _kms_public_key(arn: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    return load_der_public_key(_kms().get_public_key(KeyId=arn)["PublicKey"])


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_kms_key_recorded_without_a_certificate_gets_one_signed_in_kms(on_aws, algorithm):
    kid = signing.current_key(algorithm).kid
    _as_recorded_before_certificates(kid)

    [published] = [jwk for jwk in signing.jwks()["keys"] if jwk["kid"] == kid]

    public_key = _certificate_of(published).public_key()
    assert public_key.public_numbers() == _kms_public_key(on_aws[algorithm]).public_numbers()
    assert _stored_jwk(kid) == published


def test_kms_refusing_to_sign_a_certificate_leaves_the_jwks_served_until_it_signs(on_aws, monkeypatch):
    from botocore.exceptions import ClientError

    kid = signing.current_key("RS256").kid
    bare = _as_recorded_before_certificates(kid)
    kms_sign = signing._kms().sign

    def disabled(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": "DisabledException", "Message": "disabled"}}, "Sign")

    monkeypatch.setattr(signing._kms(), "sign", disabled)
    assert {jwk["kid"]: jwk for jwk in signing.jwks()["keys"]}[kid] == bare
    assert _stored_jwk(kid) == bare

    monkeypatch.setattr(signing._kms(), "sign", kms_sign)
    _certificate_of({jwk["kid"]: jwk for jwk in signing.jwks()["keys"]}[kid])


def test_processes_recording_the_templates_key_at_once_record_one_item(on_aws):
    signing._record_first_key("RS256")
    signing._record_first_key("RS256")
    assert [key.private_key_ref for key in _current("RS256")] == [on_aws["RS256"]]


def test_a_template_key_of_the_wrong_kind_is_a_configuration_error(on_aws, monkeypatch):
    replaced = dataclasses.replace(signing.settings(), provider_rs256_key=on_aws["ES256"])
    monkeypatch.setattr(signing, "settings", lambda: replaced)
    with pytest.raises(ConfigurationError, match="RSA_2048"):
        signing.sign(_claims(), algorithm="RS256")
    assert _current("RS256") == []


def test_kms_refusing_to_sign_is_signing_key_unavailable(on_aws, monkeypatch):
    from botocore.exceptions import ClientError

    signing.sign(_claims())

    # moto signs with a disabled key; KMS answers DisabledException.
    def disabled(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": "DisabledException", "Message": "disabled"}}, "Sign")

    monkeypatch.setattr(signing._kms(), "sign", disabled)
    with pytest.raises(SigningKeyUnavailable, match="no token was issued"):
        signing.sign(_claims())


def test_a_key_kms_cannot_describe_is_signing_key_unavailable(on_aws, monkeypatch):
    replaced = dataclasses.replace(signing.settings(), provider_rs256_key=on_aws["RS256"][:-4] + "0000")
    monkeypatch.setattr(signing, "settings", lambda: replaced)
    with pytest.raises(SigningKeyUnavailable):
        signing.sign(_claims())
    assert _current("RS256") == []


def test_without_a_key_dir_or_a_template_key_signing_asks_for_a_rotation(on_aws, monkeypatch):
    replaced = dataclasses.replace(signing.settings(), provider_es256_key=None)
    monkeypatch.setattr(signing, "settings", lambda: replaced)
    with pytest.raises(ConfigurationError, match="keys rotate"):
        signing.sign(_claims(), algorithm="ES256")


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_rotation_on_aws_makes_a_tagged_kms_key_current(on_aws, algorithm):
    old_token = signing.sign(_claims(), algorithm=algorithm)

    rotation = signing.rotate(algorithm=algorithm)

    arn = rotation.current.private_key_ref
    assert arn.startswith("arn:aws:kms:") and arn != on_aws[algorithm]
    kms = _kms()
    key_id = arn.rsplit("/", 1)[1]
    assert kms.list_resource_tags(KeyId=key_id)["Tags"] == [
        {"TagKey": signing.KMS_TAG, "TagValue": settings().tables.signing_keys}
    ]
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert (metadata["KeyUsage"], metadata["KeySpec"]) == ("SIGN_VERIFY", signing.KMS_KEY_SPECS[algorithm])
    new_token = signing.sign(_claims(), algorithm=algorithm)
    assert jwt.get_unverified_header(new_token)["kid"] == rotation.current.kid
    assert _verified_with_jwks(new_token)["sub"] == _verified_with_jwks(old_token)["sub"] == "bob"
    published = {jwk["kid"]: jwk for jwk in signing.jwks()["keys"]}
    assert json.loads(rotation.current.public_jwk) == published[rotation.current.kid]
    public_key = _certificate_of(published[rotation.current.kid]).public_key()
    assert public_key.public_numbers() == _kms_public_key(arn).public_numbers()
    _certificate_of(published[jwt.get_unverified_header(old_token)["kid"]])


def test_a_rotation_whose_key_kms_will_not_certify_changes_nothing_and_discards_the_key(on_aws, monkeypatch):
    from botocore.exceptions import ClientError

    old = signing.current_key("RS256")
    created: list[str] = []
    create_key = signing._kms().create_key

    def recorded(**arguments: Any) -> Any:
        answer = create_key(**arguments)
        created.append(answer["KeyMetadata"]["KeyId"])
        return answer

    def disabled(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": "KMSInvalidStateException", "Message": "pending"}}, "Sign")

    monkeypatch.setattr(signing._kms(), "create_key", recorded)
    monkeypatch.setattr(signing._kms(), "sign", disabled)
    with pytest.raises(SigningKeyUnavailable, match="certificate"):
        signing.rotate(algorithm="RS256")

    assert [key.kid for key in _current("RS256")] == [old.kid]
    [key_id] = created
    assert _kms().describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_a_rotation_on_aws_that_loses_the_race_schedules_its_kms_key_for_deletion(on_aws, monkeypatch):
    signing.sign(_claims())
    make_key = signing._new_kms_key
    made: list[SigningKey] = []

    def meanwhile_another_rotation(algorithm: str, now: datetime) -> SigningKey:
        key = make_key(algorithm, now)
        made.append(key)
        if len(made) == 1:
            signing.rotate(algorithm=algorithm)
        return key

    monkeypatch.setattr(signing, "_new_kms_key", meanwhile_another_rotation)
    with pytest.raises(ConcurrentChange):
        signing.rotate(algorithm="RS256")
    state = _kms().describe_key(KeyId=made[0].private_key_ref.rsplit("/", 1)[1])["KeyMetadata"]["KeyState"]
    assert state == "PendingDeletion"
    assert len(_current("RS256")) == 1


# --- python -m keyward keys -----------------------------------------------------------------------


def test_keys_rotate_and_list_from_the_command_line(capsys, time):
    old = signing.current_key("ES256")

    assert main(["keys", "rotate", "--algorithm", "ES256"]) == 0
    out = capsys.readouterr().out
    [new] = _current("ES256")
    until = clock.iso(time.now + signing.RETIRED_KEY_PUBLISHED_FOR)
    assert f"ES256: {new.kid} is current" in out
    assert f"ES256: {old.kid} retired, published until {until}" in out

    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith(f"{new.kid}  ES256  current")
    assert any(line.startswith(f"{old.kid}  ES256  retired, published until {until}") for line in listed)

    time.advance(signing.RETIRED_KEY_PUBLISHED_FOR)
    assert main(["keys", "list"]) == 0
    assert "no longer published" in capsys.readouterr().out


def test_keys_rotate_defaults_to_rs256():
    assert main(["keys", "rotate"]) == 0
    assert len(_current("RS256")) == 1 and _current("ES256") == []


def test_a_failed_rotation_prints_one_line_and_no_traceback(capsys, monkeypatch):
    signing.current_key("RS256")
    make_key = signing._new_local_key

    def meanwhile_another_rotation(algorithm: str, now: datetime) -> SigningKey:
        monkeypatch.setattr(signing, "_new_local_key", make_key)
        signing.rotate(algorithm=algorithm)
        return make_key(algorithm, now)

    monkeypatch.setattr(signing, "_new_local_key", meanwhile_another_rotation)
    assert main(["keys", "rotate"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "Another rotation" in err
