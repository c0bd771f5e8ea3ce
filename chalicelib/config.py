"""keyward's settings, read once from the environment into one typed object.

This is the only module that reads ``os.environ``; every other module asks :func:`settings`.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Mapping

from chalicelib.errors import ConfigurationError


@dataclass(frozen=True)
class Tables:
    """Names of the DynamoDB tables, one per kind of record."""

    orgs: str
    members: str
    keys: str
    credentials: str
    challenges: str
    sessions: str
    backup_credentials: str
    throttles: str
    audit: str
    webhooks: str
    deliveries: str


@dataclass(frozen=True)
class Settings:
    """Everything keyward needs to know about the stage it runs in."""

    stage: str
    region: str
    dynamodb_endpoint: str | None
    tables: Tables

    # WebAuthn relying party.
    rp_id: str
    rp_name: str
    allowed_origins: tuple[str, ...]

    # The organization's identity provider (OIDC ID tokens).
    oidc_issuer: str
    oidc_audience: str
    jwks_url: str | None
    jwks_json: str | None
    org_claim: str
    groups_claim: str
    admin_group: str
    name_claim: str
    email_claim: str

    session_lifetime_seconds: int
    challenge_lifetime_seconds: int
    max_body_bytes: int
    max_keys_per_member: int

    # The stream function that ends sessions in bulk after an enforcement.
    orgs_stream_arn: str
    invalidation_reserve_seconds: int

    audit_retention_days: int

    # The stream function that delivers audit events: mail (SES), EventBridge, webhooks.
    audit_stream_arn: str
    # The sender of notification mails; empty turns mail off for the stage.
    mail_from: str
    # The EventBridge bus every audit event goes to; empty sends none.
    event_bus: str
    # Local stage only: where SES and EventBridge answer (moto), instead of AWS.
    aws_endpoint: str | None
    # Failed delivery attempts in a row after which a webhook endpoint is disabled.
    webhook_disable_after_failures: int

    backup_login_max_failures: int
    backup_login_window_seconds: int

    # The local stage's stand-in IdP: its private key lets the console mint demo ID tokens.
    dev_idp_key_file: str | None


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, not {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, not {value}")
    return value


def load(env: Mapping[str, str]) -> Settings:
    """Build the settings from an environment mapping (``os.environ`` in production)."""
    prefix = env.get("KEYWARD_TABLE_PREFIX", "keyward-")
    origins = tuple(o.strip() for o in env.get("KEYWARD_ALLOWED_ORIGINS", "http://localhost:8000").split(",") if o.strip())
    jwks_url = env.get("KEYWARD_JWKS_URL") or None
    jwks_json = env.get("KEYWARD_JWKS_JSON") or None
    stage = env.get("KEYWARD_STAGE", "local")
    dev_idp_key_file = env.get("KEYWARD_DEV_IDP_KEY_FILE") or None
    if dev_idp_key_file is not None and stage != "local":
        # Whoever holds this key can sign in as anyone the JWKS trusts it for: never on AWS.
        raise ConfigurationError(f"KEYWARD_DEV_IDP_KEY_FILE is for the local stage only, not {stage!r}")
    aws_endpoint = env.get("KEYWARD_AWS_ENDPOINT") or None
    if aws_endpoint is not None and stage != "local":
        # Mail and audit events would go to whatever answers there instead of AWS.
        raise ConfigurationError(f"KEYWARD_AWS_ENDPOINT is for the local stage only, not {stage!r}")
    return Settings(
        stage=stage,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        dynamodb_endpoint=env.get("DYNAMODB_ENDPOINT") or None,
        tables=Tables(
            orgs=env.get("KEYWARD_ORGS_TABLE", prefix + "orgs"),
            members=env.get("KEYWARD_MEMBERS_TABLE", prefix + "members"),
            keys=env.get("KEYWARD_KEYS_TABLE", prefix + "keys"),
            credentials=env.get("KEYWARD_CREDENTIALS_TABLE", prefix + "credentials"),
            challenges=env.get("KEYWARD_CHALLENGES_TABLE", prefix + "challenges"),
            sessions=env.get("KEYWARD_SESSIONS_TABLE", prefix + "sessions"),
            backup_credentials=env.get("KEYWARD_BACKUP_CREDENTIALS_TABLE", prefix + "backup-credentials"),
            throttles=env.get("KEYWARD_THROTTLES_TABLE", prefix + "throttles"),
            audit=env.get("KEYWARD_AUDIT_TABLE", prefix + "audit"),
            webhooks=env.get("KEYWARD_WEBHOOKS_TABLE", prefix + "webhooks"),
            deliveries=env.get("KEYWARD_DELIVERIES_TABLE", prefix + "deliveries"),
        ),
        rp_id=env.get("KEYWARD_RP_ID", "localhost"),
        rp_name=env.get("KEYWARD_RP_NAME", "keyward"),
        allowed_origins=origins,
        oidc_issuer=env.get("KEYWARD_OIDC_ISSUER", "http://localhost:8000/dev-idp"),
        oidc_audience=env.get("KEYWARD_OIDC_AUDIENCE", "keyward-local"),
        jwks_url=jwks_url,
        jwks_json=jwks_json,
        org_claim=env.get("KEYWARD_ORG_CLAIM", "org"),
        groups_claim=env.get("KEYWARD_GROUPS_CLAIM", "groups"),
        admin_group=env.get("KEYWARD_ADMIN_GROUP", "keyward-admins"),
        name_claim=env.get("KEYWARD_NAME_CLAIM", "name"),
        email_claim=env.get("KEYWARD_EMAIL_CLAIM", "email"),
        session_lifetime_seconds=_integer(env, "KEYWARD_SESSION_LIFETIME_SECONDS", 12 * 3600),
        challenge_lifetime_seconds=_integer(env, "KEYWARD_CHALLENGE_LIFETIME_SECONDS", 300),
        max_body_bytes=_integer(env, "KEYWARD_MAX_BODY_BYTES", 64 * 1024),
        max_keys_per_member=_integer(env, "KEYWARD_MAX_KEYS_PER_MEMBER", 20),
        orgs_stream_arn=env.get(
            "KEYWARD_ORGS_STREAM_ARN",
            f"arn:aws:dynamodb:us-east-1:000000000000:table/{prefix}orgs/stream/local",
        ),
        invalidation_reserve_seconds=_integer(env, "KEYWARD_INVALIDATION_RESERVE_SECONDS", 60),
        audit_retention_days=_integer(env, "KEYWARD_AUDIT_RETENTION_DAYS", 400),
        audit_stream_arn=env.get(
            "KEYWARD_AUDIT_STREAM_ARN",
            f"arn:aws:dynamodb:us-east-1:000000000000:table/{prefix}audit/stream/local",
        ),
        mail_from=env.get("KEYWARD_MAIL_FROM", "").strip(),
        event_bus=env.get("KEYWARD_EVENT_BUS", "").strip(),
        aws_endpoint=aws_endpoint,
        webhook_disable_after_failures=_integer(env, "KEYWARD_WEBHOOK_DISABLE_AFTER_FAILURES", 10),
        backup_login_max_failures=_integer(env, "KEYWARD_BACKUP_LOGIN_MAX_FAILURES", 5),
        backup_login_window_seconds=_integer(env, "KEYWARD_BACKUP_LOGIN_WINDOW_SECONDS", 15 * 60),
        dev_idp_key_file=dev_idp_key_file,
    )


@functools.cache
def settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return load(os.environ)
