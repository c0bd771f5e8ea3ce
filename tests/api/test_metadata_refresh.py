"""The scheduled metadata refresh as Lambda runs it: the function app.py registers, a BLOB from
the Metadata Service's URL, and what the invocation reports (its result, its exception, the
metric line the MetadataStaleAlarm watches)."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from app import refresh_authenticator_metadata
from chalicelib.background import metadata_refresh
from chalicelib.base.errors import MetadataRejected
from chalicelib.base.models import AuthenticatorModel
from chalicelib.ceremony import metadata
from tests.support.attestation_ca import VendorRoot, metadata_entry, signed_blob

AAGUID = "6e2b4c1a-0d5f-4c9e-9a3b-1f2e3d4c5b6a"
FUNCTION_NAME = "keyward-prod-RefreshAuthenticatorMetadata-1A2B3C"
# What EventBridge sends a scheduled function.
SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-12-07T06:00:00Z",
    "region": "eu-west-1",
    "resources": ["arn:aws:events:eu-west-1:123456789012:rule/keyward-prod-refresh"],
    "detail": {},
}


@dataclass
class LambdaContext:
    function_name: str = FUNCTION_NAME
    aws_request_id: str = "5b3a1b2c-0000-4000-8000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def mds_root(monkeypatch: pytest.MonkeyPatch) -> VendorRoot:
    """The FIDO Alliance's root, as far as the refresh knows."""
    root = VendorRoot("Keyward Test MDS Root")
    monkeypatch.setattr(metadata_refresh, "fido_root", lambda: root.der)
    return root


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What the Metadata Service's URL serves: the last BLOB appended."""
    blobs: list[bytes] = []

    def urlopen(url: str, timeout: float) -> io.BytesIO:
        return io.BytesIO(blobs[-1])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return blobs


def _blob(root: VendorRoot, number: int) -> bytes:
    vendor = VendorRoot("Keyward Test Vendor Root")
    entry = metadata_entry(aaguid=AAGUID, description="Key", root=vendor)
    return signed_blob(number=number, root=root, entries=[entry])


def _metric_lines(output: str) -> list[dict]:
    """The lines confirming the metadata (every refresh also measures its age: tests/api/test_metrics.py)."""
    return [line for line in map(json.loads, filter(None, output.splitlines())) if "MetadataConfirmed" in line]


def _blob_in_use() -> int:
    return int(AuthenticatorModel.get(metadata.CURRENT, consistent_read=True).blob_number)


def test_a_newer_blob_is_loaded_and_the_metadata_confirmed(mds_root, published, capsys):
    published.append(_blob(mds_root, 10_000))

    result = refresh_authenticator_metadata(SCHEDULED_EVENT, LambdaContext())

    assert result == {"loaded": True, "blob_number": 10_000, "newly_compromised": [], "keys_flagged": 0}
    assert _blob_in_use() == 10_000
    [line] = _metric_lines(capsys.readouterr().out)
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive == {
        "Namespace": "keyward",
        "Dimensions": [["FunctionName"]],
        "Metrics": [{"Name": "MetadataConfirmed", "Unit": "Count"}],
    }
    assert (line["FunctionName"], line["MetadataConfirmed"]) == (FUNCTION_NAME, 1)


def test_the_blob_in_use_again_is_a_success_that_confirms_the_metadata(mds_root, published, capsys):
    published.append(_blob(mds_root, 10_000))
    refresh_authenticator_metadata(SCHEDULED_EVENT, LambdaContext())
    capsys.readouterr()

    assert refresh_authenticator_metadata(SCHEDULED_EVENT, LambdaContext()) == {"loaded": False}

    assert _blob_in_use() == 10_000
    assert [line["MetadataConfirmed"] for line in _metric_lines(capsys.readouterr().out)] == [1]


def test_a_blob_that_does_not_verify_fails_the_invocation(mds_root, published, capsys):
    """Lambda counts an invocation that returns as a success, whatever it returns: the refresh
    must raise for the Errors alarm, the retries and the dead-letter queue to see a bad BLOB."""
    published.append(_blob(mds_root, 10_000))
    refresh_authenticator_metadata(SCHEDULED_EVENT, LambdaContext())
    capsys.readouterr()
    header, payload, signature = _blob(mds_root, 10_001).split(b".")
    document = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    document["entries"][0]["statusReports"].append({"status": "REVOKED", "effectiveDate": "2030-01-01"})
    tampered = header + b"." + base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=") + b"." + signature
    published.append(tampered)

    with pytest.raises(MetadataRejected, match="did not verify"):
        refresh_authenticator_metadata(SCHEDULED_EVENT, LambdaContext())

    assert _blob_in_use() == 10_000
    assert _metric_lines(capsys.readouterr().out) == [], "a failed refresh confirms nothing"


def test_an_older_blob_fails_the_invocation(mds_root, published, capsys):
    published.append(_blob(mds_root, 10_000))
    refresh_authenticator_metadata(SCHEDULED_EVENT, LambdaContext())
    capsys.readouterr()
    published.append(_blob(mds_root, 9_999))

    with pytest.raises(MetadataRejected, match="older than no. 10000"):
        refresh_authenticator_metadata(SCHEDULED_EVENT, LambdaContext())

    assert _blob_in_use() == 10_000
    assert _metric_lines(capsys.readouterr().out) == []


def test_a_failed_download_fails_the_invocation(mds_root, monkeypatch, capsys):
    def unreachable(url: str, timeout: float) -> io.BytesIO:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)

    with pytest.raises(OSError):
        refresh_authenticator_metadata(SCHEDULED_EVENT, LambdaContext())

    assert _metric_lines(capsys.readouterr().out) == []
