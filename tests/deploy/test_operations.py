"""Operability of the packaged template (docs/operations.md): the alarms and where they go, the
data protection of the tables, the queues and the logs, the limits at the edge, and checkov.

Each set the tests expect is computed from the template itself: a new function, queue or table
without its alarms fails here, as does a new table without point-in-time recovery or a stated
reason to go without.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[2]
FOURTEEN_DAYS = 14 * 24 * 3600

# The tables that hold what people would miss: point-in-time recovery, 35 days back. The others
# (challenges, sessions, throttles, enrolment passes, deliveries, authorizations, authenticator
# models) hold short-lived or rebuilt items: their template resource says why in its checkov skip.
RECOVERED_MODELS = {
    "Organization",
    "Member",
    "SecurityKey",
    "CredentialClaim",
    "BackupCredential",
    "AuditEvent",
    "LegacyAuditEvent",
    "Webhook",
    "WebhookChange",
    "RelyingParty",
    "SigningKey",
}

# checkov's checks that keyward accepts failing for the whole template, and why. A check accepted
# for one resource only is skipped in that resource's Metadata, with its reason beside it.
ACCEPTED_CHECKS = {
    "CKV_AWS_117": "Lambda in a VPC: the functions reach only AWS APIs, which IAM guards, and the internet "
    "(the IdP's JWKS, the FIDO Metadata Service, webhooks): a VPC would add NAT gateways and cold-start "
    "time, and protect nothing the roles do not.",
    "CKV_AWS_119": "DynamoDB with a customer managed key: the tables are encrypted at rest with DynamoDB's "
    "own key, and the secrets keyward stores are hashed (backup credentials, client secrets) or sealed "
    "with KMS (webhook secrets); a customer managed key would add cost and a key whose loss loses the data.",
    "CKV_AWS_158": "Log groups with a customer managed key: CloudWatch Logs encrypts every log group at "
    "rest, and keyward logs no token, secret or code.",
    "CKV_AWS_173": "Lambda environment with a customer managed key: Lambda encrypts it at rest; it holds "
    "table names, ARNs, URLs and limits, no secret.",
    "CKV_AWS_27": "SQS encryption: every queue has SqsManagedSseEnabled (tested here); checkov 3.3.30 "
    "recognizes only KmsMasterKeyId.",
}


# --- the template -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prod stage's template, built as docs/deploy.md says (the package beside it is
    tests/deploy/test_deploy.py's concern)."""
    out = tmp_path_factory.mktemp("operations") / "out"
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KEYWARD_", "DYNAMODB_")) and name not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")
    }
    environment.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    done = subprocess.run(
        [sys.executable, "-m", "deploy", "--stage", "prod", str(out)],
        cwd=PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out / "sam.json"


@pytest.fixture(scope="module")
def template(template_path: Path) -> dict[str, Any]:
    built: dict[str, Any] = json.loads(template_path.read_text())
    return built


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in _resources(template, "AWS::CloudWatch::Alarm").items()}


def _alarms_on(template: dict[str, Any], namespace: str, metric: str, dimension: tuple[str, Any]) -> list[str]:
    """The alarms on one metric of one resource, directly or through metric math."""
    found = []
    for name, alarm in _alarms(template).items():
        metrics = [alarm] + [
            query["MetricStat"]["Metric"] for query in alarm.get("Metrics", []) if "MetricStat" in query
        ]
        for watched in metrics:
            dimensions = {d["Name"]: d["Value"] for d in watched.get("Dimensions", [])}
            if (watched.get("Namespace"), watched.get("MetricName")) == (namespace, metric) and dimensions.get(
                dimension[0]
            ) == dimension[1]:
                found.append(name)
    return list(dict.fromkeys(found))  # an alarm once, however many of its queries match


def _schedule_seconds(schedule: str) -> int:
    rate = re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", schedule)
    assert rate, schedule
    return int(rate[1]) * {"minute": 60, "hour": 3600, "day": 86400}[rate[2]]


# --- alarms -----------------------------------------------------------------------------------


def test_every_alarm_notifies_the_topic_which_mails_the_alarm_email_when_one_is_given(template):
    alarms = _alarms(template)
    assert alarms
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert "docs/operations.md" in json.dumps(alarm["AlarmDescription"]), name
        # CloudWatch refuses an alarm that looks back further than a day (periods under an hour)
        # or seven days.
        periods = [alarm.get("Period")] + [
            q["MetricStat"]["Period"] for q in alarm.get("Metrics", []) if "MetricStat" in q
        ]
        [period] = {period for period in periods if period}
        assert period * alarm["EvaluationPeriods"] <= (86400 if period < 3600 else 7 * 86400), name
    assert template["Resources"]["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    [subscription] = _resources(template, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    assert template["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""


def test_every_function_has_an_errors_and_a_throttles_alarm(template):
    functions = _resources(template, "AWS::Serverless::Function")
    assert len(functions) >= 4
    for name in functions:
        for metric in ("Errors", "Throttles"):
            [alarm] = _alarms_on(template, "AWS/Lambda", metric, ("FunctionName", {"Ref": name}))
            properties = _alarms(template)[alarm]
            assert (properties["ComparisonOperator"], properties["Threshold"]) == ("GreaterThanThreshold", 0), alarm
            assert properties["TreatMissingData"] == "notBreaching", alarm


def test_every_queue_is_a_failure_destination_kept_14_days_encrypted_and_alarmed_on(template):
    queues = _resources(template, "AWS::SQS::Queue")
    destinations = set()
    for function in _resources(template, "AWS::Serverless::Function").values():
        properties = function["Properties"]
        for event in properties.get("Events", {}).values():
            destination = event["Properties"].get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            if destination:
                destinations.add(destination["Fn::GetAtt"][0])
        if "DeadLetterQueue" in properties:
            assert properties["DeadLetterQueue"]["Type"] == "SQS"
            destinations.add(properties["DeadLetterQueue"]["TargetArn"]["Fn::GetAtt"][0])
    assert destinations == set(queues), "every queue is where a function's failures go, and nothing else"
    for name, queue in queues.items():
        assert queue["Properties"]["MessageRetentionPeriod"] == FOURTEEN_DAYS, name
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, name
        [alarm] = _alarms_on(
            template,
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            ("QueueName", {"Fn::GetAtt": [name, "QueueName"]}),
        )
        properties = _alarms(template)[alarm]
        assert (properties["Statistic"], properties["ComparisonOperator"], properties["Threshold"]) == (
            "Maximum",
            "GreaterThanThreshold",
            0,
        )


def test_the_scheduled_refresh_has_a_dead_letter_queue_and_fails_when_its_blob_does_not_verify(template):
    [refresh] = [
        f
        for f in _resources(template, "AWS::Serverless::Function").values()
        if f["Properties"]["Handler"] == "app.refresh_authenticator_metadata"
    ]
    queue = refresh["Properties"]["DeadLetterQueue"]["TargetArn"]["Fn::GetAtt"][0]
    assert template["Resources"][queue]["Type"] == "AWS::SQS::Queue"


def test_every_table_has_a_throttle_alarm_on_its_and_its_global_indexes_read_and_write_throttle_events(template):
    """ReadThrottleEvents and WriteThrottleEvents have a TableName dimension of their own and count
    every kind of throttling (on-demand limits, hot keys, the account's limits); ThrottledRequests
    is published per operation, so one alarm per table would need one metric per operation. The
    TableName dimension alone leaves a global index's throttling out (DynamoDB publishes it with
    the GlobalSecondaryIndexName dimension too), and a hot index throttles the table's writes:
    the alarm sums the indexes' events with the table's."""
    for name, table in _resources(template, "AWS::DynamoDB::Table").items():
        [reads] = _alarms_on(template, "AWS/DynamoDB", "ReadThrottleEvents", ("TableName", {"Ref": name}))
        [writes] = _alarms_on(template, "AWS/DynamoDB", "WriteThrottleEvents", ("TableName", {"Ref": name}))
        assert reads == writes, name
        alarm = _alarms(template)[reads]
        [expression] = [query for query in alarm["Metrics"] if query.get("ReturnData")]
        summed = {term.strip()[len("FILL(") : -len(", 0)")] for term in expression["Expression"].split("+")}
        watched = {
            (
                query["MetricStat"]["Metric"]["MetricName"],
                next(
                    (
                        d["Value"]
                        for d in query["MetricStat"]["Metric"]["Dimensions"]
                        if d["Name"] == "GlobalSecondaryIndexName"
                    ),
                    None,
                ),
            )
            for query in alarm["Metrics"]
            if query["Id"] in summed
        }
        indexes = [None, *(index["IndexName"] for index in table["Properties"].get("GlobalSecondaryIndexes", []))]
        assert watched == {
            (metric, index) for metric in ("ReadThrottleEvents", "WriteThrottleEvents") for index in indexes
        }, name
        assert {query["Id"] for query in alarm["Metrics"]} == summed | {expression["Id"]}, name


def test_the_api_has_a_5xx_alarm_on_its_own_name_and_stage(template):
    api = template["Resources"]["RestAPI"]["Properties"]
    [alarm] = _alarms_on(template, "AWS/ApiGateway", "5XXError", ("ApiName", api["Name"]))
    dimensions = {d["Name"]: d["Value"] for d in _alarms(template)[alarm]["Dimensions"]}
    assert dimensions == {"ApiName": {"Ref": "AWS::StackName"}, "Stage": api["StageName"]}


def test_the_outbox_backlog_has_an_alarm_on_the_delivery_functions_iterator_age(template):
    [delivery] = [
        name
        for name, f in _resources(template, "AWS::Serverless::Function").items()
        if f["Properties"]["Handler"] == "app.deliver_audit_events"
    ]
    [alarm] = _alarms_on(template, "AWS/Lambda", "IteratorAge", ("FunctionName", {"Ref": delivery}))
    properties = _alarms(template)[alarm]
    event = next(iter(template["Resources"][delivery]["Properties"]["Events"].values()))["Properties"]
    # Paged well before Lambda gives the oldest records up.
    assert properties["Statistic"] == "Maximum"
    assert 0 < properties["Threshold"] < event["MaximumRecordAgeInSeconds"] * 1000 / 4


def test_metadata_older_than_two_refresh_periods_raises_an_alarm_on_the_metric_the_refresh_emits(template):
    from chalicelib.background import metadata_refresh

    [name] = [
        name
        for name, f in _resources(template, "AWS::Serverless::Function").items()
        if f["Properties"]["Handler"] == "app.refresh_authenticator_metadata"
    ]
    emitted = json.loads(metadata_refresh.metadata_confirmed_metric(function_name="f"))
    [directive] = emitted["_aws"]["CloudWatchMetrics"]
    [alarm] = _alarms_on(
        template, directive["Namespace"], metadata_refresh.METADATA_CONFIRMED, ("FunctionName", {"Ref": name})
    )
    assert directive["Dimensions"] == [["FunctionName"]]
    properties = _alarms(template)[alarm]
    [event] = template["Resources"][name]["Properties"]["Events"].values()
    period = _schedule_seconds(event["Properties"]["Schedule"])
    assert properties["Period"] * properties["EvaluationPeriods"] == 2 * period
    assert properties["Period"] == period, "one refresh in each period"
    assert (properties["Statistic"], properties["ComparisonOperator"], properties["Threshold"]) == (
        "Sum",
        "LessThanThreshold",
        1,
    )
    # No refresh at all (the schedule disabled, the function failing before it logs) is stale too.
    assert properties["TreatMissingData"] == "breaching"


def test_the_outputs_name_every_function_and_the_topic(template):
    outputs = template["Outputs"]
    named = {json.dumps(output["Value"]) for output in outputs.values()}
    for name in _resources(template, "AWS::Serverless::Function"):
        assert json.dumps({"Ref": name}) in named, name
    assert json.dumps({"Ref": "AlarmTopic"}) in named


# --- data protection --------------------------------------------------------------------------


def test_point_in_time_recovery_on_the_tables_people_would_miss_and_a_reason_on_the_others(template):
    from chalicelib.base.models import ALL_MODELS

    assert RECOVERED_MODELS <= {model.__name__ for model in ALL_MODELS}
    tables = _resources(template, "AWS::DynamoDB::Table")
    recovered = {
        name
        for name, table in tables.items()
        if table["Properties"].get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
    }
    expected = {
        _table_of(template, model.Meta.table_name) for model in ALL_MODELS if model.__name__ in RECOVERED_MODELS
    }
    assert recovered == expected
    for name in set(tables) - recovered:
        skips = tables[name].get("Metadata", {}).get("checkov", {}).get("skip", [])
        assert [skip["id"] for skip in skips] == ["CKV_AWS_28"], name
        assert len(skips[0]["comment"]) > 40, name


def _table_of(template: dict[str, Any], table_name: str) -> str:
    """The template's table resource for a table of this process's settings: the one whose Ref
    the template gives the setting's environment variable (config.py reads KEYWARD_<FIELD>_TABLE)."""
    from chalicelib.base.config import settings

    [field] = [field for field, name in dataclasses.asdict(settings().tables).items() if name == table_name]
    function = next(iter(_resources(template, "AWS::Serverless::Function").values()))
    reference: str = function["Properties"]["Environment"]["Variables"][f"KEYWARD_{field.upper()}_TABLE"]["Ref"]
    assert template["Resources"][reference]["Type"] == "AWS::DynamoDB::Table"
    return reference


def test_every_retained_table_has_deletion_protection_from_a_parameter_on_by_default(template):
    parameter = template["Parameters"]["TableDeletionProtection"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("true", ["true", "false"])
    assert template["Conditions"]["ProtectTables"] == {"Fn::Equals": [{"Ref": "TableDeletionProtection"}, "true"]}
    for name, table in _resources(template, "AWS::DynamoDB::Table").items():
        protection = table["Properties"].get("DeletionProtectionEnabled")
        if table["DeletionPolicy"] == "Retain":
            assert protection == {"Fn::If": ["ProtectTables", True, False]}, name
        else:
            # The stack deletes it (rebuilt from the FIDO metadata): protection would stop that.
            assert protection is None, name


def test_every_log_group_is_kept_for_the_retention_parameter(template):
    groups = _resources(template, "AWS::Logs::LogGroup")
    for function in _resources(template, "AWS::Serverless::Function").values():
        assert function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] in groups
    for name, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}, name


# --- tracing, concurrency ---------------------------------------------------------------------


def _role_named(role: dict) -> str:
    if "Fn::If" in role:
        condition, named, otherwise = role["Fn::If"]
        assert otherwise == {"Ref": "AWS::NoValue"}, role
        return named["Ref"]
    return role["Ref"]


def test_tracing_of_the_stage_and_every_function_follows_one_parameter(template):
    assert template["Parameters"]["Tracing"]["AllowedValues"] == ["Active", "PassThrough"]
    functions = _resources(template, "AWS::Serverless::Function")
    for name, function in functions.items():
        assert function["Properties"]["Tracing"] == {"Ref": "Tracing"}, name
    api = template["Resources"]["RestAPI"]["Properties"]
    assert api["TracingEnabled"] == {"Fn::If": ["TracingActive", True, False]}
    # Tracing needs X-Ray's write actions, which take no resource but '*': in a policy of their
    # own, on every function's role, only while tracing is on.
    policy = template["Resources"]["TracingPolicy"]
    assert policy["Condition"] == "TracingActive"
    roles = {function["Properties"]["Role"]["Fn::GetAtt"][0] for function in functions.values()}
    # An optional function's role is named only where the function exists.
    assert {_role_named(role) for role in policy["Properties"]["Roles"]} == roles
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert set(statement["Action"]) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_the_background_functions_reserve_their_concurrency(template):
    reserved = {
        f["Properties"]["Handler"]: f["Properties"].get("ReservedConcurrentExecutions")
        for f in _resources(template, "AWS::Serverless::Function").values()
    }
    assert reserved.pop("app.app") is None
    # The authorizer answers requests, as the API does: a cap would fail them.
    assert reserved.pop("app.api_authorizer") is None
    # One refresh at a time: two would race to load the same BLOB.
    assert reserved.pop("app.refresh_authenticator_metadata") == {
        "Fn::If": ["ReservesBackgroundConcurrency", 1, {"Ref": "AWS::NoValue"}]
    }
    for handler, value in reserved.items():
        condition, count, otherwise = value["Fn::If"]
        assert (condition, otherwise) == ("ReservesBackgroundConcurrency", {"Ref": "AWS::NoValue"}), handler
        assert count >= 1, handler


# --- the edge ---------------------------------------------------------------------------------


def test_the_api_stage_writes_json_access_logs_to_a_log_group_of_its_own(template):
    setting = template["Resources"]["RestAPI"]["Properties"]["AccessLogSetting"]
    group = setting["DestinationArn"]["Fn::GetAtt"]
    assert group[1] == "Arn" and template["Resources"][group[0]]["Type"] == "AWS::Logs::LogGroup"
    fields = json.loads(setting["Format"])
    assert fields["requestId"] == "$context.requestId"
    assert fields["ip"] == "$context.identity.sourceIp"
    assert fields["route"] == "$context.resourcePath"
    assert fields["status"] == "$context.status"
    assert fields["latency"] == "$context.responseLatency"
    # API Gateway refuses access logging until the account names a CloudWatch role; the stack sets
    # one where asked, and the API waits for it.
    assert template["Resources"]["ApiGatewayAccount"]["Condition"] == "CreatesApiGatewayLogRole"
    assert template["Resources"]["RestAPI"]["DependsOn"] == ["ApiGatewayLoggingReady"]
    handle = template["Resources"]["ApiGatewayLoggingReady"]["Metadata"]
    assert handle == {"AccountSettings": {"Fn::If": ["CreatesApiGatewayLogRole", {"Ref": "ApiGatewayAccount"}, ""]}}


def test_the_optional_web_acl_limits_each_ip_address_on_the_sign_in_and_provider_paths_and_overall(template):
    assert template["Conditions"]["WafEnabled"] == {"Fn::Equals": [{"Ref": "EnableWaf"}, "true"]}
    [(acl_name, acl)] = _resources(template, "AWS::WAFv2::WebACL").items()
    [association] = _resources(template, "AWS::WAFv2::WebACLAssociation").values()
    assert acl["Condition"] == association["Condition"] == "WafEnabled"
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_name, "Arn"]}
    stage = template["Resources"]["RestAPI"]["Properties"]["StageName"]
    assert association["Properties"]["ResourceArn"]["Fn::Sub"].endswith(f"/restapis/${{RestAPI}}/stages/{stage}")
    assert acl["Properties"]["Scope"] == "REGIONAL" and acl["Properties"]["DefaultAction"] == {"Allow": {}}

    rules = {rule["Name"]: rule for rule in acl["Properties"]["Rules"]}
    for rule in rules.values():
        statement = rule["Statement"]["RateBasedStatement"]
        assert statement["AggregateKeyType"] == "IP", "a key the client chooses (a header) would let it pick its bucket"
        assert rule["Action"] == {"Block": {"CustomResponse": {"ResponseCode": 429}}}
        assert template["Parameters"][statement["Limit"]["Ref"]]["Type"] == "Number"
    assert "ScopeDownStatement" not in rules["all-per-ip"]["Statement"]["RateBasedStatement"]
    scope = rules["sign-in-per-ip"]["Statement"]["RateBasedStatement"]["ScopeDownStatement"]["RegexMatchStatement"]
    assert scope["FieldToMatch"] == {"UriPath": {}}
    pattern = re.compile(scope["RegexString"])
    public = ["/auth/login", "/auth/backup-login", "/oidc/token", "/.well-known/openid-configuration"]
    for path in public:
        # Through the stage's own URL, and through a custom domain whose mapping drops the stage.
        assert pattern.search(f"/{stage}{path}") and pattern.search(path), path
    for path in ("/me", "/org/members", "/console/app.js", "/openapi.json", f"/{stage}/me/mfa"):
        assert not pattern.search(path), path


# --- checkov ----------------------------------------------------------------------------------


def _checkov() -> Path:
    """checkov from its own virtualenv (requirements-checkov.txt says why), made on first use."""
    requirements = PROJECT / "requirements-checkov.txt"
    digest = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    environment = cache / "keyward" / f"checkov-{digest}"
    checkov = environment / "bin" / "checkov"
    stamp = environment / ".installed"
    if not stamp.exists():
        venv.create(environment, with_pip=True, clear=True)
        done = subprocess.run(
            [str(environment / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            + ["-r", str(requirements)],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        stamp.touch()
    return checkov


def test_checkov_passes_but_for_the_checks_accepted_with_a_reason(template_path):
    accepted = sorted(ACCEPTED_CHECKS)
    done = subprocess.run(
        [str(_checkov()), "--file", str(template_path), "--framework", "cloudformation"]
        + ["--skip-download", "--skip-check", ",".join(accepted), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(done.stdout)
    failed = [
        f"{check['check_id']} {check['resource']}: {check['check_name']}"
        for check in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert done.returncode == 0, done.stderr
    assert report["summary"]["passed"] > 50
    # Each check skipped in the template's Metadata says why.
    skipped = report["results"]["skipped_checks"]
    assert skipped
    for check in skipped:
        assert len(check["check_result"]["suppress_comment"]) > 40, (check["check_id"], check["resource"])
