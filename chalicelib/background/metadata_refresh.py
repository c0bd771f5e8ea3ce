"""The daily refresh of the FIDO Metadata Service's BLOB: verify it up to the FIDO Alliance's root,
store its authenticator models, flag the stored keys of models it newly reports compromised, and
start a compliance recount where an organization's policy reads model statuses. What the metadata
says of a key at registration: chalicelib/ceremony/metadata.py."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fido2.mds3 import parse_blob

from chalicelib.base import audit, clock, metrics
from chalicelib.base.config import settings
from chalicelib.base.errors import MetadataRejected
from chalicelib.base.models import AuthenticatorModel, Organization, SecurityKey
from chalicelib.ceremony import authenticator_policy, metadata
from chalicelib.ceremony.authenticator_policy import COMPROMISED_STATUSES
from chalicelib.counters import compliance

log = logging.getLogger("keyward.metadata")

# The metric each successful refresh emits (CloudWatch embedded metric format, from the function's
# log); the template's MetadataStaleAlarm fires when two days pass without one.
METRICS_NAMESPACE = "keyward"
METADATA_CONFIRMED = "MetadataConfirmed"


class MetadataUpToDate(MetadataRejected):
    """The BLOB is the one in use: nothing to load, and nothing wrong."""


@dataclass(frozen=True)
class LoadedBlob:
    """What :func:`load_blob` changed."""

    blob_number: int
    models: int
    # Models the FIDO Alliance newly reports compromised, and how many stored keys were flagged.
    newly_compromised: tuple[str, ...]
    keys_flagged: int


def refresh(*, function_name: str) -> LoadedBlob | None:
    """The daily refresh: download the FIDO Alliance's BLOB and load it if it verifies and is
    newer. Returns None when the BLOB is the one in use already. Either way the metadata is
    confirmed current, and the refresh says so in ``function_name``'s metrics. Whether or not it
    succeeds, it measures the age of the BLOB in use (:func:`measure_age`).

    Raises:
        OSError: the BLOB could not be downloaded.
        MetadataRejected: the BLOB does not verify, or is older than the one in use; the metadata
            in use stays. The invocation fails, so that Lambda retries it and counts an error.
    """
    try:
        return _refresh(function_name=function_name)
    finally:
        measure_age()


def _refresh(*, function_name: str) -> LoadedBlob | None:
    import urllib.request

    url = settings().mds_url
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            blob = response.read(64 * 1024 * 1024)
    except OSError as error:
        log.error("could not download the metadata BLOB from %s: %s", url, error)
        raise
    try:
        loaded: LoadedBlob | None = load_blob(blob=blob)
    except MetadataUpToDate as same:
        log.info("metadata BLOB from %s not loaded: %s", url, same)
        loaded = None
    except MetadataRejected as refused:
        log.error("metadata BLOB from %s not loaded: %s", url, refused)
        raise
    print(metadata_confirmed_metric(function_name=function_name), flush=True)
    return loaded


def metadata_confirmed_metric(*, function_name: str) -> str:
    """One log line in CloudWatch's embedded metric format: the metadata was confirmed current."""
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": METRICS_NAMESPACE,
                        "Dimensions": [["FunctionName"]],
                        "Metrics": [{"Name": METADATA_CONFIRMED, "Unit": "Count"}],
                    }
                ],
            },
            "FunctionName": function_name,
            METADATA_CONFIRMED: 1,
        },
        separators=(",", ":"),
    )


def measure_age() -> None:
    """The metric ``MetadataAgeHours``: the hours since the BLOB in use was loaded. Where
    MetadataConfirmed says that a refresh ran, this says how old what it left in use is, and it is
    measured when a refresh fails too, which is when it grows. The BLOB bundled with the code,
    in use until a refresh loads one, has no load time and no age."""
    try:
        current = AuthenticatorModel.get(metadata.CURRENT, consistent_read=True)
    except AuthenticatorModel.DoesNotExist:
        return
    except Exception as error:  # the refresh's own outcome, raised or returned, matters more
        log.warning("could not read the metadata in use to measure its age: %s", error)
        return
    if current.loaded_at is None:
        return
    hours = (clock.now() - current.loaded_at).total_seconds() / 3600
    metrics.measure("MetadataAgeHours", round(hours, 2), unit=metrics.Unit.NONE, blob_number=int(current.blob_number))


def fido_root() -> bytes:
    return x509.load_pem_x509_certificate(metadata.FIDO_MDS_ROOT.read_bytes()).public_bytes(Encoding.DER)


def load_blob(*, blob: bytes, trust_root: bytes | None = None) -> LoadedBlob:
    """Verify an MDS3 BLOB's signature chain up to ``trust_root`` (the FIDO Alliance's root by
    default) and make it the current metadata; stored keys of models it newly reports
    compromised are flagged and the flag audited in their organizations.

    Raises:
        MetadataUpToDate: the BLOB is the current one.
        MetadataRejected: the BLOB does not verify, or is older than the current one; the
            current metadata stays as it was.
    """
    root = fido_root() if trust_root is None else trust_root
    try:
        # python-fido2 checks the x5c chain up to the root and the JWS signature with its leaf.
        parse_blob(blob, root)
        payload = json.loads(_jws_payload(blob))
        number = int(payload["no"])
        entries = payload["entries"]
    except Exception as error:  # a BLOB is attacker-reachable input: any failure rejects it
        raise MetadataRejected(f"The metadata BLOB did not verify: {error}") from None
    return _store(number=number, next_update=str(payload.get("nextUpdate") or ""), entries=entries)


def _jws_payload(blob: bytes) -> bytes:
    import base64

    payload = blob.strip().split(b".")[1]
    return base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))


def _store(*, number: int, next_update: str, entries: list[dict[str, Any]]) -> LoadedBlob:
    try:
        current = AuthenticatorModel.get(metadata.CURRENT, consistent_read=True)
        previous_number = int(current.blob_number)
    except AuthenticatorModel.DoesNotExist:
        previous_number = metadata.bundled_blob_number()
    if number == previous_number:
        raise MetadataUpToDate(f"The metadata BLOB no. {number} is the one in use.")
    if number < previous_number:
        raise MetadataRejected(f"The metadata BLOB no. {number} is older than no. {previous_number} in use.")

    index = metadata.entries_by_model_id(entries)
    before = {
        item.model_id: item
        for item in AuthenticatorModel.scan(consistent_read=True)
        if item.model_id != metadata.CURRENT
    }
    loaded_at = clock.now()
    with AuthenticatorModel.batch_write() as batch:
        for model_id, entry in index.items():
            info = metadata.model_from_entry(model_id, entry)
            batch.save(
                AuthenticatorModel(
                    model_id,
                    description=info.description,
                    statuses=list(info.statuses),
                    entry=json.dumps(entry, separators=(",", ":")),
                    blob_number=number,
                    next_update=next_update,
                    loaded_at=loaded_at,
                )
            )
        for model_id, item in before.items():
            if model_id not in index:
                batch.delete(item)

    newly_compromised = []
    flagged = 0
    for model_id, entry in index.items():
        info = metadata.model_from_entry(model_id, entry)
        old = before.get(model_id)
        old_statuses = tuple(old.statuses or ()) if old is not None else _bundled_statuses(model_id)
        if old_statuses == info.statuses:
            continue
        if info.compromised and not any(status in COMPROMISED_STATUSES for status in old_statuses):
            newly_compromised.append(model_id)
        flagged += _restamp_keys(model=info, compromised_now=model_id in newly_compromised)
    # Last, so that readers switch to the new models only once all of them are stored.
    AuthenticatorModel(metadata.CURRENT, blob_number=number, next_update=next_update, loaded_at=loaded_at).save()
    log.info("metadata BLOB no. %d loaded: %d models, newly compromised %s", number, len(index), newly_compromised)
    return LoadedBlob(
        blob_number=number, models=len(index), newly_compromised=tuple(newly_compromised), keys_flagged=flagged
    )


def _bundled_statuses(model_id: str) -> tuple[str, ...]:
    entry = metadata.bundled_index().get(model_id)
    return metadata.model_from_entry(model_id, entry).statuses if entry is not None else ()


def _restamp_keys(*, model: metadata.ModelInfo, compromised_now: bool) -> int:
    """Record the model's new status on every stored key of it; audit the ones it compromises.
    Organizations whose policy reads model statuses recount their compliance afterwards."""
    changed = 0
    orgs: set[str] = set()
    for found in SecurityKey.by_model.query(model.model_id):
        key = SecurityKey(found.org_id, found.key_id)
        try:
            # What the model lacks, the key lacks too, as when a key of it is registered.
            key.update(
                actions=[
                    SecurityKey.model_status.set(model.status)
                    if model.status is not None
                    else SecurityKey.model_status.remove(),
                    SecurityKey.model.set(model.description)
                    if model.description is not None
                    else SecurityKey.model.remove(),
                ],
                condition=SecurityKey.key_id.exists(),
            )
        except Exception as error:  # a key deleted meanwhile, or a throttled write: the next refresh retries
            log.warning("could not flag key %s/%s: %s", found.org_id, found.key_id, error)
            continue
        changed += 1
        orgs.add(found.org_id)
        if compromised_now:
            audit.record(
                org_id=found.org_id,
                actor=audit.SYSTEM,
                action="key.model_compromised",
                target=found.key_id,
                user_id=found.user_id,
                details={"model": model.description or model.model_id, "status": model.status},
            )
    _recount_compliance(orgs)
    return changed


def _recount_compliance(org_ids: set[str]) -> None:
    """Start a compliance recount in each organization whose policy reads model statuses (after
    the keys were restamped, so that the recount reads the new statuses)."""
    for org_id in sorted(org_ids):
        try:
            org = Organization.get(org_id, consistent_read=True, attributes_to_get=["org_id", "authenticator_policy"])
        except Organization.DoesNotExist:
            continue
        if authenticator_policy.of(org).attestation is authenticator_policy.Attestation.REQUIRED:
            compliance.restart(org_id=org_id)
