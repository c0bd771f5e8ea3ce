"""Real registrations captured from real authenticators, one of each attestation statement format
(``attestation_vectors.json``; where they come from is written at its top).

They are copied rather than imported from the fido-mds package's tests: importing those loads
the fido_mds package, which adds an ``android-key`` verifier to python-fido2 for the whole
process, and so hid that keyward itself had none.

py_webauthn checks that each certificate of a chain is valid now, and real attestation chains
are short-lived (an Android key's intermediates live for weeks, an Apple attestation
certificate for three days): :func:`certificate_store_at` is a certificate store whose clock is
the moment a registration was captured, for py_webauthn's own testing hook
(``webauthn.helpers.validate_certificate_chain._generate_new_cert_store``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from OpenSSL.crypto import X509Store

VECTORS = Path(__file__).resolve().parent / "attestation_vectors.json"


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class CapturedRegistration:
    """One authenticator's answer to ``navigator.credentials.create()``, and where and when it was made."""

    name: str
    device: str
    format: str
    aaguid: str
    rp_id: str
    origin: str
    captured_at: datetime
    credential_id: str
    attestation_object: bytes
    client_data_json: bytes

    @property
    def challenge(self) -> bytes:
        return _b64url(json.loads(self.client_data_json)["challenge"])

    def as_json(self) -> dict[str, Any]:
        """The vector as the file holds it (for a process that reads it without this module)."""
        return next(row for row in _rows() if row["name"] == self.name)


def _rows() -> list[dict[str, Any]]:
    return json.loads(VECTORS.read_text())["registrations"]


def captured(name: str) -> CapturedRegistration:
    """The registration called ``name`` in the file (``PIXEL_8A``, ``YUBIKEY_5_NFC``, ...)."""
    [row] = [row for row in _rows() if row["name"] == name]
    return CapturedRegistration(
        name=row["name"],
        device=row["device"],
        format=row["format"],
        aaguid=row["aaguid"],
        rp_id=row["rp_id"],
        origin=row["origin"],
        captured_at=datetime.fromisoformat(row["captured_at"]),
        credential_id=row["credential_id"],
        attestation_object=_b64url(row["attestation_object"]),
        client_data_json=_b64url(row["client_data_json"]),
    )


def certificate_store_at(moment: datetime) -> X509Store:
    """An empty certificate store that checks validity at ``moment`` instead of now."""
    store = X509Store()
    store.set_time(moment)
    return store
