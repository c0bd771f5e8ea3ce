"""The OpenID provider's signing keys: what signs its tokens, what the JWKS publishes, and rotation.

Every token the provider issues is a JWS signed by the *current* key of its algorithm (RS256, which
Entra requires, or ES256 where a client's registration asks for it). A key is published in the
JWKS while it is current and, once retired, until every token it signed has expired
(``published_until``), so that a relying party that cached the JWKS never meets a token it cannot
verify, nor one signed by a key that was retired long ago.

Where a private key is, its item's ``private_key_ref`` says: a KMS key ARN on AWS, where the key
never leaves KMS and the provider asks KMS for each signature; locally, the name of a PEM file under
``settings().provider_key_dir`` (``.devstack/provider-keys``). The table is read at most once a
minute per process for signing (:data:`KEY_CACHE_TTL`); the public key is stored with the item, so
no request asks KMS for it.

Each key's public JWK carries a self-signed X.509 certificate of the key (``x5c``, ``x5t``,
``x5t#S256``), which Entra ID requires (:mod:`chalicelib.provider.certificates`), made when the key
is recorded. A key recorded before keys had one gets it the first time the JWKS is read, by a
conditional update, so that a deployment needs no step for it (and only what serves the JWKS
writes keys' items; signing and verifying only read them).

The first key of an algorithm is the template's KMS key (``KEYWARD_PROVIDER_RS256_KEY``,
``KEYWARD_PROVIDER_ES256_KEY``), or locally a PEM file, recorded on first use under a ``kid`` derived
from it, so that processes recording it at once write the same item. ``python -m keyward keys
rotate`` makes a new key current and retires the old one in one transaction that requires the old
one to still be current: of two rotations at once, one fails and changes nothing.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chalicelib.base import aws, clock, storage
from chalicelib.base.config import settings
from chalicelib.base.errors import ConcurrentChange, ConfigurationError, SigningKeyUnavailable
from chalicelib.base.models import SigningKey
from chalicelib.provider import certificates

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

log = logging.getLogger("keyward.provider")

ALGORITHMS = ("RS256", "ES256")
CURRENT, RETIRED = "current", "retired"

# How long the provider's tokens live (exp - iat), and the leeway relying parties allow past exp.
ID_TOKEN_LIFETIME = timedelta(minutes=5)
ACCESS_TOKEN_LIFETIME = timedelta(minutes=10)
MAX_TOKEN_LIFETIME = max(ID_TOKEN_LIFETIME, ACCESS_TOKEN_LIFETIME)
CLOCK_SKEW = timedelta(minutes=2)
# How long a process signs with the key set it read: after a rotation, others may sign with the
# old key that long.
KEY_CACHE_TTL = timedelta(seconds=60)
# A retired key stays in the JWKS until the last token it may have signed has expired.
RETIRED_KEY_PUBLISHED_FOR = KEY_CACHE_TTL + MAX_TOKEN_LIFETIME + CLOCK_SKEW

# The KMS key of each algorithm: its key spec and the signing algorithm KMS names it by.
KMS_KEY_SPECS = {"RS256": "RSA_2048", "ES256": "ECC_NIST_P256"}
KMS_SIGNING_ALGORITHMS = {"RS256": "RSASSA_PKCS1_V1_5_SHA_256", "ES256": "ECDSA_SHA_256"}
# The tag on every provider signing key in KMS: the table of keys it belongs to. The API's role may
# sign only with keys tagged with its own table, so a rotation's new key needs no policy change.
KMS_TAG = "keyward:signing-keys-table"
# KMS signs a message of up to 4096 bytes as it is; a longer one is sent as its SHA-256 digest.
KMS_RAW_MESSAGE_LIMIT = 4096
# A key created by a rotation that lost to another is scheduled for deletion after this many days.
DISCARDED_KEY_PENDING_DAYS = 7


@dataclass(frozen=True)
class PublishedKey:
    """A key of the JWKS: its ``kid``, algorithm and public JWK."""

    kid: str
    algorithm: str
    jwk: dict[str, Any]


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: the key now current, and the keys it retired (published until when)."""

    current: SigningKey
    retired: tuple[SigningKey, ...]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _checked(algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        raise ConfigurationError(f"The provider signs with {', '.join(ALGORITHMS)}, not {algorithm!r}.")
    return algorithm


# --- the key set, read at most once a minute ------------------------------------------------------


@dataclass(frozen=True)
class _KeySet:
    keys: tuple[SigningKey, ...]
    read_at: float  # time.monotonic()


_key_set: _KeySet | None = None


def forget_keys() -> None:
    """Drop this process's copy of the key set, so the next use reads the table (after a rotation,
    and between tests that empty the tables)."""
    global _key_set
    _key_set = None


def _keys(*, fresh: bool = False) -> tuple[SigningKey, ...]:
    global _key_set
    cached = _key_set
    if not fresh and cached is not None and time.monotonic() - cached.read_at < KEY_CACHE_TTL.total_seconds():
        return cached.keys
    # A handful of items: the current key of each algorithm and the retired ones still published.
    keys = tuple(SigningKey.scan(consistent_read=True))
    _key_set = _KeySet(keys=keys, read_at=time.monotonic())
    return keys


def _certify_published(keys: tuple[SigningKey, ...]) -> bool:
    """Give each published key recorded before keys had certificates its certificate, once: a
    conditional update, so that of processes doing it at once one writes and the rest publish that.

    Returns:
        False when another process certified one of them first (the item read here is stale).
    """
    from pynamodb.exceptions import UpdateError

    settled = True
    for key in _published(keys, clock.now()):
        jwk = json.loads(key.public_jwk)
        if "x5c" in jwk:
            continue
        try:
            public_key = _public_key(jwk)
            certified = _certified_jwk(jwk, algorithm=key.algorithm, public_key=public_key, ref=key.private_key_ref)
        except (SigningKeyUnavailable, ConfigurationError, OSError) as error:
            # The JWKS goes on being served, this key without its certificate; the next read tries again.
            log.warning("The signing key %s has no certificate yet: %s", key.kid, error)
            continue
        try:
            key.update(
                actions=[SigningKey.public_jwk.set(certified)], condition=SigningKey.public_jwk == key.public_jwk
            )
        except UpdateError as error:
            if not storage.condition_failed(error):
                raise
            settled = False
    return settled


def _published(keys: tuple[SigningKey, ...], now: datetime) -> list[SigningKey]:
    return [
        key for key in keys if key.state == CURRENT or (key.published_until is not None and key.published_until > now)
    ]


def _newest_current(keys: tuple[SigningKey, ...], algorithm: str) -> SigningKey | None:
    # Two current keys of one algorithm can only come from first keys recorded at once: every
    # process then signs with the same one, the newest, and the next rotation retires both.
    current = [key for key in keys if key.state == CURRENT and key.algorithm == algorithm]
    return max(current, key=lambda key: (key.created_at, key.kid)) if current else None


def published_keys() -> list[PublishedKey]:
    """The keys a relying party may meet in a token now: current ones and retired ones whose
    tokens may not have expired yet. Read from the table, not this process's copy: a relying party
    that fetches the JWKS for a new ``kid`` must find it whichever process answers."""
    keys = _keys(fresh=True)
    if not _certify_published(keys):
        # Another process gave a key its certificate first: publish that one.
        keys = _keys(fresh=True)
    return [
        PublishedKey(kid=key.kid, algorithm=key.algorithm, jwk=json.loads(key.public_jwk))
        for key in _published(keys, clock.now())
    ]


def jwks() -> dict[str, Any]:
    """The JWK Set at the discovery document's ``jwks_uri`` (RFC 7517 §5)."""
    return {"keys": [key.jwk for key in published_keys()]}


def all_keys() -> list[SigningKey]:
    """Every key of the table, current ones first, then the newest first (``keys list``)."""
    return sorted(_keys(fresh=True), key=lambda key: (key.state != CURRENT, -key.created_at.timestamp()))


def current_key(algorithm: str) -> SigningKey:
    """The key that signs ``algorithm``'s tokens now, recording the first one if there is none.

    Raises:
        ConfigurationError: no key of that algorithm is configured (see ``keys rotate``).
        SigningKeyUnavailable: KMS did not give the public key of the template's key.
    """
    _checked(algorithm)
    key = _newest_current(_keys(), algorithm) or _newest_current(_keys(fresh=True), algorithm)
    if key is not None:
        return key
    _record_first_key(algorithm)
    key = _newest_current(_keys(fresh=True), algorithm)
    if key is None:
        raise ConfigurationError(
            f"The provider has no current {algorithm} signing key: run `python -m keyward keys rotate "
            f"--algorithm {algorithm}`."
        )
    return key


def ensure_current_keys() -> list[SigningKey]:
    """A current key of every algorithm, recorded where there is none (the local stack does this
    before it serves, so that no request writes a key file)."""
    return [current_key(algorithm) for algorithm in ALGORITHMS]


# --- signing and verifying ------------------------------------------------------------------------


def sign(claims: dict[str, Any], *, algorithm: str = "RS256", typ: str = "JWT") -> str:
    """A compact JWS of ``claims``, signed by the current key of ``algorithm``.

    Raises:
        SigningKeyUnavailable: KMS did not sign; no token was made.
    """
    key = current_key(algorithm)
    header = {"alg": algorithm, "kid": key.kid, "typ": typ}
    signing_input = f"{_b64(_compact(header))}.{_b64(_compact(claims))}".encode("ascii")
    if _in_kms(key.private_key_ref):
        signature = _sign_in_kms(key, signing_input)
    else:
        signature = _local_signature(_private_key(str(_key_dir() / key.private_key_ref)), signing_input)
    return f"{signing_input.decode('ascii')}.{_b64(_jws_signature(algorithm, signature))}"


def verify(token: str, *, typ: str | None = None, audience: str | None = None) -> dict[str, Any]:
    """The claims of a token this provider signed with a key it still publishes, checked for
    issuer, expiry and (when given) audience and header ``typ``.

    Raises:
        jwt.PyJWTError: any failure; callers turn it into their own refusal.
    """
    import jwt

    header = jwt.get_unverified_header(token)
    if typ is not None and header.get("typ") != typ:
        raise jwt.InvalidTokenError("The token is of another type.")
    kid = header.get("kid", "")
    key = _published_key(kid, _keys())
    if key is None:
        # Another process may have rotated since this one read the keys.
        key = _published_key(kid, _keys(fresh=True))
    if key is None:
        raise jwt.InvalidTokenError("The token is not signed by a key this provider publishes.")
    return jwt.decode(
        token,
        key=jwt.PyJWK(json.loads(key.public_jwk)).key,
        algorithms=[key.algorithm],
        issuer=settings().provider_issuer,
        audience=audience,
        options={"require": ["exp", "iat", "iss"], "verify_aud": audience is not None},
    )


def _published_key(kid: str, keys: tuple[SigningKey, ...]) -> SigningKey | None:
    return next((key for key in _published(keys, clock.now()) if key.kid == kid), None)


def _in_kms(private_key_ref: str) -> bool:
    return private_key_ref.startswith("arn:")


# --- rotation -------------------------------------------------------------------------------------


def rotate(*, algorithm: str = "RS256") -> Rotation:
    """Make a new key current for ``algorithm`` and retire the current one, published for
    :data:`RETIRED_KEY_PUBLISHED_FOR` more. The new key is made in KMS (on AWS) or as a PEM file
    (where ``KEYWARD_PROVIDER_KEY_DIR`` is set).

    Raises:
        ConcurrentChange: another rotation changed the algorithm's keys meanwhile; nothing was
            changed (the key made for this one is discarded).
        SigningKeyUnavailable: KMS did not create the key.
    """
    _checked(algorithm)
    previous = [key for key in _keys(fresh=True) if key.state == CURRENT and key.algorithm == algorithm]
    now = clock.now()
    new = _new_local_key(algorithm, now) if settings().provider_key_dir is not None else _new_kms_key(algorithm, now)
    retired_until = now + RETIRED_KEY_PUBLISHED_FOR
    try:
        with storage.transaction() as write:
            write.save(storage.Item.SIGNING_KEY, new, condition=SigningKey.kid.does_not_exist())
            for old in previous:
                write.update(
                    storage.Item.SIGNING_KEY,
                    old,
                    actions=[
                        SigningKey.state.set(RETIRED),
                        SigningKey.retired_at.set(now),
                        SigningKey.published_until.set(retired_until),
                    ],
                    condition=SigningKey.state == CURRENT,
                )
    except storage.ConditionsFailed:
        _discard(new)
        raise ConcurrentChange(
            f"Another rotation changed the current {algorithm} key at the same time; nothing was changed. Run it again."
        ) from None
    finally:
        forget_keys()
    for old in previous:
        old.state, old.retired_at, old.published_until = RETIRED, now, retired_until
    return Rotation(current=new, retired=tuple(previous))


def _signing_key(*, kid: str, algorithm: str, public_key: PublicKeyTypes, ref: str, now: datetime) -> SigningKey:
    """The item of a new key, its JWK with the key's certificate (which the key signs).

    Raises:
        SigningKeyUnavailable: KMS did not sign the certificate.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    jwk: dict[str, Any]
    if algorithm == "RS256" and isinstance(public_key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    elif algorithm == "ES256" and isinstance(public_key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        raise ConfigurationError(f"The signing key {ref} is not a key for {algorithm}.")
    jwk.pop("key_ops", None)
    return SigningKey(
        kid,
        algorithm=algorithm,
        public_jwk=_certified_jwk(
            {**jwk, "kid": kid, "use": "sig", "alg": algorithm}, algorithm=algorithm, public_key=public_key, ref=ref
        ),
        private_key_ref=ref,
        state=CURRENT,
        created_at=now,
    )


def _certified_jwk(
    jwk: dict[str, Any], *, algorithm: str, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, ref: str
) -> str:
    """``jwk`` with the key's self-signed certificate (``x5c``, ``x5t``, ``x5t#S256``), as stored.

    Raises:
        SigningKeyUnavailable: KMS did not sign the certificate.
    """
    certificate = certificates.self_signed(
        algorithm=algorithm,
        public_key=public_key,
        issuer=settings().provider_issuer,
        now=clock.now(),
        sign=_signer(algorithm, ref),
    )
    return json.dumps({**jwk, **certificates.jwk_parameters(certificate)})


def _public_key(jwk: dict[str, Any]) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = jwt.PyJWK(jwk).key
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ConfigurationError(f"The signing key {jwk.get('kid')} is neither RSA nor EC.")
    return key


def _signer(algorithm: str, ref: str) -> certificates.Signer:
    """What signs with the private key at ``ref``: KMS, or the local PEM file."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not _in_kms(ref):
        private_key = _private_key(str(_key_dir() / ref))
        return lambda message: _local_signature(private_key, message)

    def in_kms(message: bytes) -> bytes:
        try:
            return _kms_signature(ref, algorithm, message)
        except (BotoCoreError, ClientError) as error:
            raise SigningKeyUnavailable(
                f"KMS did not sign the certificate of the {algorithm} key {ref} ({type(error).__name__})."
            ) from None

    return in_kms


def _record_first_key(algorithm: str) -> None:
    from pynamodb.exceptions import PutError

    configured = settings().provider_rs256_key if algorithm == "RS256" else settings().provider_es256_key
    if configured:
        key = _kms_key(
            algorithm, configured, kid=f"{algorithm.lower()}-{hashlib.sha256(configured.encode()).hexdigest()[:16]}"
        )
    elif settings().provider_key_dir is not None:
        key = _first_local_key(algorithm)
    else:
        return
    try:
        key.save(condition=SigningKey.kid.does_not_exist())
    except PutError as error:
        if storage.response_code(error) != "ConditionalCheckFailedException":
            raise
        # Another process recorded the same key first.


# --- keys in KMS ----------------------------------------------------------------------------------


def _kms() -> Any:
    return aws.client("kms")


def _kms_key(algorithm: str, key_id: str, *, kid: str) -> SigningKey:
    """The item of a KMS key, with the public key KMS gives for it (once: it is stored)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        answer = _kms().get_public_key(KeyId=key_id)
    except (BotoCoreError, ClientError) as error:
        raise SigningKeyUnavailable(
            f"KMS did not give the public key of the {algorithm} signing key ({type(error).__name__})."
        ) from None
    spec = answer.get("KeySpec") or answer.get("CustomerMasterKeySpec")
    if answer.get("KeyUsage") != "SIGN_VERIFY" or spec != KMS_KEY_SPECS[algorithm]:
        raise ConfigurationError(
            f"The {algorithm} signing key must be a SIGN_VERIFY key of spec {KMS_KEY_SPECS[algorithm]}, "
            f"not {answer.get('KeyUsage')} {spec}: {key_id}"
        )
    # KMS answers with the key's ARN whatever named it; the item must name it by ARN too, as that
    # is how a signer is told from a file name.
    arn = answer["KeyId"] if str(answer["KeyId"]).startswith("arn:") else key_id
    if not arn.startswith("arn:"):
        raise ConfigurationError(f"Name the {algorithm} signing key by its ARN, not {key_id!r}.")
    return _signing_key(
        kid=kid, algorithm=algorithm, public_key=load_der_public_key(answer["PublicKey"]), ref=arn, now=clock.now()
    )


def _new_kms_key(algorithm: str, now: datetime) -> SigningKey:
    from botocore.exceptions import BotoCoreError, ClientError

    table = settings().tables.signing_keys
    try:
        created = _kms().create_key(
            Description=f"keyward: signs the OpenID provider's {algorithm} tokens ({table})",
            KeyUsage="SIGN_VERIFY",
            KeySpec=KMS_KEY_SPECS[algorithm],
            Tags=[{"TagKey": KMS_TAG, "TagValue": table}],
        )["KeyMetadata"]
    except (BotoCoreError, ClientError) as error:
        raise SigningKeyUnavailable(f"KMS did not create the new {algorithm} key ({type(error).__name__}).") from None
    try:
        key = _kms_key(algorithm, created["Arn"], kid=f"{algorithm.lower()}-{secrets.token_hex(8)}")
    except SigningKeyUnavailable:
        _discard_kms_key(created["Arn"])
        raise
    key.created_at = now
    return key


def _sign_in_kms(key: SigningKey, signing_input: bytes) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _kms_signature(key.private_key_ref, key.algorithm, signing_input)
    except (BotoCoreError, ClientError) as error:
        raise SigningKeyUnavailable(
            f"KMS did not sign with the {key.algorithm} key {key.kid} ({type(error).__name__}); no token was issued."
        ) from None


def _kms_signature(arn: str, algorithm: str, data: bytes) -> bytes:
    """KMS's signature of ``data`` with SHA-256: PKCS#1 v1.5, or DER-encoded ECDSA.

    Raises:
        BotoCoreError, ClientError: KMS did not sign.
    """
    if len(data) <= KMS_RAW_MESSAGE_LIMIT:
        message, message_type = data, "RAW"
    else:
        message, message_type = hashlib.sha256(data).digest(), "DIGEST"
    return bytes(
        _kms().sign(
            KeyId=arn, Message=message, MessageType=message_type, SigningAlgorithm=KMS_SIGNING_ALGORITHMS[algorithm]
        )["Signature"]
    )


def _jws_signature(algorithm: str, signature: bytes) -> bytes:
    """JWS wants ES256 as r || s, 32 bytes each (RFC 7518 §3.4); KMS and cryptography give DER."""
    if algorithm != "ES256":
        return signature
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(signature)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _discard(key: SigningKey) -> None:
    """Undo the key material made for a rotation that changed nothing."""
    if _in_kms(key.private_key_ref):
        _discard_kms_key(key.private_key_ref)
    else:
        (_key_dir() / key.private_key_ref).unlink(missing_ok=True)


def _discard_kms_key(arn: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _kms().schedule_key_deletion(KeyId=arn.rsplit("/", 1)[-1], PendingWindowInDays=DISCARDED_KEY_PENDING_DAYS)
    except (BotoCoreError, ClientError):
        pass  # an unused key, tagged with its table: an operator may delete it


# --- the local stage's keys -----------------------------------------------------------------------


def _key_dir() -> Path:
    directory = settings().provider_key_dir
    if directory is None:
        raise ConfigurationError("KEYWARD_PROVIDER_KEY_DIR is not set.")
    return Path(directory)


def _first_local_key(algorithm: str) -> SigningKey:
    """The newest PEM file of ``algorithm`` in the key directory, else a new one: a local stack
    started again on empty tables keeps signing with the key relying parties saw before."""
    existing = sorted(_key_dir().glob(f"{algorithm.lower()}-*.pem"), key=lambda path: path.stat().st_mtime)
    if not existing:
        return _new_local_key(algorithm, clock.now())
    return _local_key(algorithm, existing[-1], now=clock.now())


def _new_local_key(algorithm: str, now: datetime) -> SigningKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm == "RS256":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private_key = ec.generate_private_key(ec.SECP256R1())
    directory = _key_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{algorithm.lower()}-{secrets.token_hex(8)}.pem"
    path.touch(mode=0o600)
    path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return _local_key(algorithm, path, now=now)


def _local_key(algorithm: str, path: Path, *, now: datetime) -> SigningKey:
    return _signing_key(
        kid=path.stem, algorithm=algorithm, public_key=_private_key(str(path)).public_key(), ref=path.name, now=now
    )


@functools.lru_cache(maxsize=16)
def _private_key(path: str) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def _local_signature(private_key: Any, data: bytes) -> bytes:
    """The local key's signature of ``data`` with SHA-256, as KMS gives it: PKCS#1 v1.5, or DER ECDSA."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(data, ec.ECDSA(hashes.SHA256()))
    raise ConfigurationError("A local signing key is neither RSA nor EC.")
