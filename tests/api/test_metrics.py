"""keyward's metrics, as CloudWatch Logs would extract them: real flows through the API and the
stream functions, their standard output read back as embedded metric format (EMF) documents,
each checked against AWS's "Specification: Embedded metric format" before its values are counted."""

from __future__ import annotations

import base64
import json
import math
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import botocore.client
import pytest
from botocore.exceptions import ClientError

from chalicelib.background import invalidation, metadata_refresh
from chalicelib.base import clock
from chalicelib.base.config import settings
from chalicelib.base.models import AuthenticatorModel, Delivery, Organization
from chalicelib.ceremony import metadata
from chalicelib.delivery import notifications, outbox
from devstack.stream import StreamPump
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.oidc import REDIRECT_URI, authorization_request, key_check, register_client, relying_party

# The units the specification allows (CloudWatch's StandardUnit).
UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}  # fmt: skip
# Who a line is about, and what must never be: none of these is ever a dimension.
NEVER_DIMENSIONS = {"org", "org_id", "user", "user_id", "token", "session_id", "client_id", "key_id"}
# The dimensions there are: each value of each is a metric billed by the month.
DIMENSIONS = {"Stage", "Reason", "Method", "Channel", "FunctionName"}


def _check_emf(document: dict[str, Any]) -> None:
    """The document is one CloudWatch Logs extracts metrics from, as the specification states it."""
    metadata_object = document["_aws"]
    assert set(metadata_object) <= {"Timestamp", "CloudWatchMetrics"}
    timestamp = metadata_object["Timestamp"]
    assert isinstance(timestamp, int) and abs(timestamp / 1000 - clock.now().timestamp()) < 300
    directives = metadata_object["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert directive["Namespace"] == "keyward"
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list) and len(dimension_set) <= 30
            for name in dimension_set:
                # Each dimension is a member of the root whose value is a string.
                assert isinstance(document.get(name), str) and document[name], (name, document)
                assert name.lower() not in NEVER_DIMENSIONS and name in DIMENSIONS, (name, document)
        assert 0 < len(directive["Metrics"]) <= 100
        for definition in directive["Metrics"]:
            assert set(definition) <= {"Name", "Unit", "StorageResolution"}
            assert definition.get("Unit", "None") in UNITS
            value = document[definition["Name"]]
            values = value if isinstance(value, list) else [value]
            assert values and len(values) <= 100
            for number in values:
                assert isinstance(number, int | float) and not isinstance(number, bool) and math.isfinite(number)
    assert len(json.dumps(document).encode()) < 256 * 1024


class Emitted:
    """The EMF documents written to standard output, each checked as it is read."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self.documents: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        for line in self._capsys.readouterr().out.splitlines():
            if line.startswith("{") and '"_aws"' in line:
                document = json.loads(line)
                _check_emf(document)
                self.documents.append(document)
        return self.documents

    def of(self, name: str, **dimensions: str) -> list[dict[str, Any]]:
        """The documents holding metric ``name`` under exactly these dimensions besides the stage."""
        wanted = {"Stage", *dimensions}
        found = []
        for document in self.read():
            for directive in document["_aws"]["CloudWatchMetrics"]:
                names = {definition["Name"] for definition in directive["Metrics"]}
                if name in names and sorted(wanted) in [sorted(s) for s in directive["Dimensions"]]:
                    if all(document.get(key) == value for key, value in dimensions.items()):
                        found.append(document)
        return found

    def total(self, name: str, **dimensions: str) -> float:
        return sum(document[name] for document in self.of(name, **dimensions))

    def unit(self, name: str) -> str:
        [unit] = {
            definition.get("Unit", "None")
            for document in self.of(name)
            for directive in document["_aws"]["CloudWatchMetrics"]
            for definition in directive["Metrics"]
            if definition["Name"] == name
        }
        return unit


@pytest.fixture
def emitted(capsys: pytest.CaptureFixture[str]) -> Iterator[Emitted]:
    captured = Emitted(capsys)
    yield captured
    captured.read()  # whatever the test did not read is checked too


def _step_up(api, member, authenticator: SoftwareAuthenticator):
    options = api.call("POST", "/auth/reauth/options", token=member.token)
    assert options.status == 200, options.body
    return api.call(
        "POST",
        "/auth/reauth/verify",
        token=member.token,
        body={
            "challenge_id": options.body["challenge_id"],
            "credential": authenticator.authenticate(options.body["publicKey"]),
        },
    )


def test_a_login_an_mfa_pass_and_a_registration_are_counted_with_the_member_as_properties(api, emitted):
    bob = api.login(user="bob")
    key = SoftwareAuthenticator()
    assert api.add_key(bob, key).status == 201
    api.mfa_login(org="acme", user="bob", authenticator=key)

    assert emitted.total("Logins", Method="idp") == 2
    assert emitted.total("Logins") == 2  # the stage's total, for an alarm
    assert emitted.total("Registrations") == 1
    assert emitted.total("MfaPasses") == 1
    [login, *_] = emitted.of("Logins", Method="idp")
    assert (login["org"], login["user"], login["Stage"]) == ("acme", "bob", settings().stage)
    assert emitted.unit("Logins") == "Count"


def test_a_failed_mfa_check_is_counted_by_its_reason_code_once(api, emitted):
    key = SoftwareAuthenticator()
    bob = api.login(user="bob")
    assert api.add_key(bob, key).status == 201
    api.mfa_login(org="acme", user="bob", authenticator=key)
    key.sign_count = 0  # a clone that lags behind
    pending = api.login(user="bob")
    options = api.mfa_options(pending).body

    reply = api.mfa_verify(pending, options["challenge_id"], key.authenticate(options["publicKey"]))

    assert reply.code == "SignCountRegression"
    assert emitted.total("MfaRefusals", Reason="SignCountRegression") == 1
    assert emitted.total("MfaRefusals") == 1
    assert emitted.total("Refusals", Reason="SignCountRegression") == 1
    assert emitted.total("MfaPasses") == 1
    [refused] = emitted.of("MfaRefusals", Reason="SignCountRegression")
    assert (refused["route"], refused["status"], refused["org"], refused["user"]) == (
        "/auth/mfa/verify",
        401,
        "acme",
        "bob",
    )


def test_a_refusal_elsewhere_is_no_mfa_refusal(api, emitted):
    assert api.call("GET", "/me").code == "MissingToken"

    assert emitted.total("Refusals", Reason="MissingToken") == 1
    assert emitted.of("MfaRefusals") == []


def test_a_step_up_is_counted(api, emitted):
    key = SoftwareAuthenticator()
    bob = api.login(user="bob")
    assert api.add_key(bob, key).status == 201
    bob = api.mfa_login(org="acme", user="bob", authenticator=key)

    assert _step_up(api, bob, key).status == 200
    key.sign_count = 0
    assert _step_up(api, bob, key).code == "SignCountRegression"

    assert emitted.total("StepUps") == 1
    assert emitted.total("StepUpRefusals", Reason="SignCountRegression") == 1
    assert emitted.of("MfaRefusals") == []


def test_backup_credential_uses_failures_and_the_lockout_are_counted(api, admin, emitted):
    created = api.call("POST", "/org/backup-credentials", token=admin.token).body
    right = {"key_id": created["key_id"], "secret": created["secret"]}
    assert api.call("POST", "/auth/backup-login", body=right).status == 200
    for _ in range(settings().backup_login_max_failures):
        wrong = {"key_id": created["key_id"], "secret": "wrong"}
        assert api.call("POST", "/auth/backup-login", body=wrong).code == "InvalidBackupCredentials"
    assert api.call("POST", "/auth/backup-login", body=right).code == "TooManyAttempts"

    assert emitted.total("Logins", Method="backup") == 1
    assert emitted.of("Logins", Method="backup")[0]["org"] == "acme"
    assert emitted.total("BackupLoginRefusals", Reason="InvalidBackupCredentials") == 5
    assert emitted.total("BackupLoginRefusals", Reason="TooManyAttempts") == 1


def test_an_enforcement_clean_up_counts_the_sessions_it_ended(api, admin, stream, emitted):
    for user in ("bob", "carol", "dave"):
        api.login(user=user)
    stream.drain()
    emitted.read()

    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    stream.drain()

    ended = Organization.get("acme", consistent_read=True).invalidation.sessions_ended
    assert ended >= 3
    assert emitted.total("EnforcementSessionsEnded") == ended
    assert emitted.of("EnforcementHandoffs") == []


class _OnePage:
    """A Lambda context with time for one page of deletions: the next check says time is up."""

    def __init__(self) -> None:
        self._checks = 0

    def get_remaining_time_in_millis(self) -> int:
        self._checks += 1
        return 900_000 if self._checks == 1 else 0


def test_a_clean_up_handed_to_the_next_invocation_counts_the_handoff_and_each_invocations_part(
    api, admin, monkeypatch, emitted
):
    from app import end_sessions_on_enforcement

    # One member's sessions share a shard: two a round take several rounds.
    for _ in range(5):
        api.login(user="bob")
    monkeypatch.setattr(invalidation, "PAGE_SIZE", 2)
    pump = StreamPump(
        handler=lambda event, _context: end_sessions_on_enforcement(event, _OnePage()),
        table_name=settings().tables.orgs,
        endpoint=settings().dynamodb_endpoint,
    )
    pump.drain()
    emitted.read()

    assert (
        api.call(
            "PUT", "/org/mfa", token=admin.token, body={"enforced": True, "without_backup_credentials": True}
        ).status
        == 200
    )
    pump.drain()

    done = Organization.get("acme", consistent_read=True).invalidation
    assert done.state == "done" and done.handoffs >= 2
    assert emitted.total("EnforcementHandoffs") == done.handoffs
    parts = [document["EnforcementSessionsEnded"] for document in emitted.of("EnforcementSessionsEnded")]
    assert sum(parts) == done.sessions_ended >= 5 and len(parts) > 1


class _ThrottledSes:
    """SES answering every mail with throttling."""

    def send_raw_email(self, **_: Any) -> Any:
        error = {"Code": "Throttling", "Message": "Maximum sending rate exceeded."}
        raise ClientError({"Error": error}, "SendRawEmail")


def test_delivery_failures_are_counted_by_channel_and_the_backlog_age_measured(
    api, audit_stream, sent_mail, monkeypatch, emitted
):
    monkeypatch.setattr(notifications, "_ses", lambda: _ThrottledSes())
    monkeypatch.setattr(outbox, "BACKOFF_SECONDS", 0.0)
    bob = api.login(user="bob")
    assert api.add_key(bob).status == 201  # mailed to bob: fails
    audit_stream.drain()

    [mail] = [delivery for delivery in Delivery.scan() if delivery.channel == "mail#acme#bob"]
    assert mail.state == "failed" and mail.attempts >= outbox.ATTEMPTS
    assert emitted.total("DeliveryFailures", Channel="mail") == mail.attempts
    assert emitted.of("DeliveryFailures", Channel="mail")[0]["org"] == "acme"
    ages = emitted.of("DeliveryBacklogAge")
    assert ages and all(0 <= document["DeliveryBacklogAge"] < 300 for document in ages)
    assert emitted.unit("DeliveryBacklogAge") == "Seconds"


def test_a_dynamodb_throttle_is_counted_where_it_becomes_storage_unavailable(api, monkeypatch, emitted):
    bob = api.login(user="bob")
    real = botocore.client.BaseClient._make_api_call

    def throttled(client, operation, params):
        if operation == "TransactGetItems":
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}
            raise ClientError({"Error": error}, operation)
        return real(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", throttled)
    reply = api.call("GET", "/me", token=bob.token)

    assert (reply.status, reply.code) == (503, "StorageUnavailable")
    [throttle] = emitted.of("DynamoDBThrottles")
    assert (throttle["DynamoDBThrottles"], throttle["error_code"]) == (1, "ProvisionedThroughputExceededException")
    assert emitted.total("Refusals", Reason="StorageUnavailable") == 1


def _redeem(api, client_id: str, secret: str, **form: str) -> int:
    body = urlencode({"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI, **form})
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    headers = {"content-type": "application/x-www-form-urlencoded", "authorization": f"Basic {basic}"}
    return api.client.http.request(method="POST", path="/oidc/token", headers=headers, body=body.encode()).status_code


def test_the_openid_providers_authorization_token_and_refusal_are_counted(api, emitted):
    key = SoftwareAuthenticator()
    bob = api.login(user="bob")
    assert api.add_key(bob, key).status == 201
    bob = api.mfa_login(org="acme", user="bob", authenticator=key)
    client_id, secret = register_client()
    assert secret is not None
    verifier = secrets.token_urlsafe(48)
    request_id, _ = authorization_request(api, relying_party(api, client_id=client_id, secret=secret), verifier)
    answer = key_check(api, bob.token, request_id, key)
    code = answer["done"]["params"]["code"]

    assert _redeem(api, client_id, secret, code=code, code_verifier=verifier) == 200
    assert _redeem(api, client_id, secret, code=code, code_verifier=verifier) == 400

    assert emitted.total("ProviderAuthorizations") == 1
    assert emitted.total("ProviderTokensIssued") == 1
    assert emitted.total("ProviderRefusals", Reason="code_reused") == 1
    [authorized] = emitted.of("ProviderAuthorizations")
    assert (authorized["client_id"], authorized["org"], authorized["user"]) == (client_id, "acme", "bob")


def test_the_metadata_age_is_the_hours_since_the_blob_in_use_was_loaded(emitted):
    loaded = clock.now() - timedelta(hours=36)
    AuthenticatorModel(metadata.CURRENT, blob_number=7, next_update="", loaded_at=loaded).save()

    metadata_refresh.measure_age()

    [age] = emitted.of("MetadataAgeHours")
    assert 35.9 < age["MetadataAgeHours"] < 36.1 and age["blob_number"] == 7


def test_a_failed_refresh_still_measures_the_age(monkeypatch, emitted):
    AuthenticatorModel(metadata.CURRENT, blob_number=7, next_update="", loaded_at=clock.now()).save()
    monkeypatch.setattr(metadata_refresh, "_refresh", _unreachable)

    with pytest.raises(OSError):
        metadata_refresh.refresh(function_name="keyward-dev-refresh")

    assert len(emitted.of("MetadataAgeHours")) == 1
    assert emitted.of("MetadataConfirmed") == []


def _unreachable(*, function_name: str) -> None:
    raise OSError("no route to the metadata service")
