"""keyward's settings, read once from the environment into one typed object.

This is the only module that reads ``os.environ``; every other module asks :func:`settings`.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib.base.errors import ConfigurationError

LOCAL_STAGE = "local"


@dataclass(frozen=True)
class Tables:
    """Names of the DynamoDB tables, one per kind of record."""

    orgs: str
    members: str
    member_activity: str
    keys: str
    credentials: str
    challenges: str
    sessions: str
    backup_credentials: str
    throttles: str
    audit: str
    # The audit table from before events were spread over shards, until `migrate audit` has copied it.
    legacy_audit: str
    authenticator_models: str
    enrollment_passes: str
    webhooks: str
    deliveries: str
    webhook_changes: str
    relying_parties: str
    authorizations: str
    signing_keys: str


@dataclass(frozen=True)
class ExtraAuthenticator:
    """An in-house authenticator model the operator trusts beyond the FIDO Metadata Service."""

    description: str
    root_certificates: tuple[str, ...]  # PEM


@dataclass(frozen=True)
class IdentityProvider:
    """One OIDC IdP: how its ID tokens are verified and read, and which organizations it serves."""

    issuer: str
    audience: str
    jwks_url: str | None
    jwks_json: str | None
    org_claim: str
    groups_claim: str
    admin_group: str
    name_claim: str
    email_claim: str
    # None: any organization not bound to another IdP (the single-IdP setup).
    organizations: frozenset[str] | None


ORG_CREATION_MODES = ("on_first_login", "operator")

# Logins a second per organization: below what one organization's partition of the sessions
# table takes (docs/operations.md, "Per-organization limits").
DEFAULT_ORG_LOGIN_RATE = 200


@dataclass(frozen=True)
class PreconfiguredClient:
    """A relying party the operator configures for the whole stage (KEYWARD_PROVIDER_CLIENTS), such
    as Entra ID's multi-tenant external authentication method: it has no secret, and serves the
    organizations listed, or any organization when ``organizations`` is None (then whoever asks must
    present a valid ID token hint of a member)."""

    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    flows: frozenset[str]
    signing_alg: str
    organizations: frozenset[str] | None


# The flows and ID token algorithms of the OpenID provider, for KEYWARD_PROVIDER_CLIENTS and registrations alike.
PROVIDER_FLOWS = ("code", "id_token")
PROVIDER_SIGNING_ALGS = ("RS256", "ES256")


# No generated __eq__ and __hash__: nothing compares settings, a Mapping field makes them
# unhashable anyway, and every cold start pays for compiling them (45 fields each).
@dataclass(frozen=True, eq=False)
class Settings:
    """Everything keyward needs to know about the stage it runs in."""

    # ``None`` when KEYWARD_STAGE is unset: then this is not the local stage either.
    stage: str | None
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
    # Where the console sends users to sign in at the IdP; without it the console has no such button.
    oidc_authorization_endpoint: str | None
    jwks_url: str | None
    jwks_json: str | None
    org_claim: str
    groups_claim: str
    admin_group: str
    name_claim: str
    email_claim: str
    # Every IdP this deployment trusts; the single IdP above unless KEYWARD_IDENTITY_PROVIDERS is set.
    identity_providers: tuple[IdentityProvider, ...]
    # "on_first_login": an ID token naming an unknown organization creates it; "operator": only
    # `python -m keyward org create` does.
    org_creation: str

    session_lifetime_seconds: int
    # A session unused this long ends (checked at request time).
    session_idle_seconds: int
    # How long after a security-key check sensitive actions are allowed without another.
    reauth_window_seconds: int
    challenge_lifetime_seconds: int
    max_body_bytes: int
    max_keys_per_member: int

    # The stream function that ends sessions in bulk after an enforcement.
    orgs_stream_arn: str
    invalidation_reserve_seconds: int

    audit_retention_days: int

    # The least severe log lines written (chalicelib/base/logs.py): DEBUG, INFO, WARNING or ERROR.
    log_level: str

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
    # The KMS key (ID, ARN or alias) that seals webhook signing secrets (chalicelib/delivery/webhook_secrets.py).
    webhook_secret_key: str

    backup_login_max_failures: int
    backup_login_window_seconds: int
    # Logins a second one organization may start, unless its own item sets another rate
    # (chalicelib/access/login_rate.py); 0: no limit.
    org_login_rate: int
    # Wrong enrolment pass codes a member may enter per window.
    enrollment_pass_max_failures: int
    enrollment_pass_window_seconds: int

    # The local stage's stand-in IdP: its private key lets the console mint demo ID tokens.
    dev_idp_key_file: str | None

    # The FIDO Metadata Service: where the daily refresh fetches the BLOB, and the operator's own
    # trust for in-house authenticators (AAGUID -> description and PEM root certificates).
    mds_url: str
    extra_authenticator_roots: Mapping[str, ExtraAuthenticator]

    # The OpenID provider (chalicelib/provider/): its issuer, the API's public base URL, which
    # discovery and every token it signs name.
    provider_issuer: str
    # Local stage only: the directory of its signing keys' PEM files (on AWS they never leave KMS).
    provider_key_dir: str | None
    # Whether the API Gateway authorizer allows only sessions that proved a security key.
    authorizer_require_mfa: bool
    # Relying parties the operator configures for every organization of the stage (Entra's multi-tenant case).
    provider_clients: tuple[PreconfiguredClient, ...]
    # The template's KMS keys (ARNs) that sign the provider's first RS256 and ES256 tokens, recorded
    # as the current key of their algorithm when the signing keys table holds none yet.
    provider_rs256_key: str | None
    provider_es256_key: str | None


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        wanted = "positive" if minimum == 1 else f"{minimum} or more"
        raise ConfigurationError(f"{name} must be {wanted}, not {value}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw not in ("true", "false"):
        raise ConfigurationError(f"{name} must be true or false, not {raw!r}")
    return raw == "true"


def _log_level(env: Mapping[str, str]) -> str:
    level = (env.get("KEYWARD_LOG_LEVEL") or "INFO").strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigurationError(f"KEYWARD_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {level!r}")
    return level


def _extra_authenticators(raw: str | None) -> dict[str, ExtraAuthenticator]:
    """``KEYWARD_EXTRA_AUTHENTICATOR_ROOTS``: JSON ``{"<aaguid>": {"description": ..., "roots": [PEM, ...]}}``."""
    if not raw:
        return {}
    # Only a deployment that trusts in-house authenticators pays for uuid; every cold start reads this.
    import uuid

    try:
        document = json.loads(raw)
        extra = {}
        for aaguid, model in document.items():
            roots = model["roots"]
            if (
                not isinstance(roots, list)
                or not roots
                or not all(isinstance(r, str) and "BEGIN CERTIFICATE" in r for r in roots)
            ):
                raise ValueError(f"{aaguid}: 'roots' must list PEM certificates")
            extra[str(uuid.UUID(aaguid))] = ExtraAuthenticator(
                description=str(model.get("description") or "In-house authenticator"),
                root_certificates=tuple(roots),
            )
        return extra
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ConfigurationError(f"KEYWARD_EXTRA_AUTHENTICATOR_ROOTS is not usable: {error}") from None


def _identity_providers(env: Mapping[str, str], single: IdentityProvider) -> tuple[IdentityProvider, ...]:
    """KEYWARD_IDENTITY_PROVIDERS: a JSON list of IdPs; omitted fields take the single IdP's claims."""
    raw = env.get("KEYWARD_IDENTITY_PROVIDERS") or ""
    if not raw.strip():
        return (single,)
    try:
        entries = json.loads(raw)
    except ValueError:
        raise ConfigurationError("KEYWARD_IDENTITY_PROVIDERS must be a JSON list of identity providers.") from None
    if not isinstance(entries, list) or not entries or not all(isinstance(entry, dict) for entry in entries):
        raise ConfigurationError("KEYWARD_IDENTITY_PROVIDERS must be a non-empty JSON list of objects.")
    known = {
        "issuer",
        "audience",
        "jwks_url",
        "jwks_json",
        "org_claim",
        "groups_claim",
        "admin_group",
        "name_claim",
        "email_claim",
        "organizations",
    }
    providers: list[IdentityProvider] = []
    bound: dict[str, str] = {}
    for entry in entries:
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ConfigurationError(f"KEYWARD_IDENTITY_PROVIDERS: unknown field(s) {', '.join(unknown)}.")
        issuer, audience = entry.get("issuer"), entry.get("audience")
        if not isinstance(issuer, str) or not issuer or not isinstance(audience, str) or not audience:
            raise ConfigurationError("KEYWARD_IDENTITY_PROVIDERS: every IdP needs an 'issuer' and an 'audience'.")
        if not entry.get("jwks_url") and not entry.get("jwks_json"):
            raise ConfigurationError(f"KEYWARD_IDENTITY_PROVIDERS: {issuer} needs a 'jwks_url' (or 'jwks_json').")
        organizations = entry.get("organizations")
        if organizations is not None:
            if not isinstance(organizations, list) or not all(isinstance(org, str) and org for org in organizations):
                raise ConfigurationError(
                    f"KEYWARD_IDENTITY_PROVIDERS: {issuer}'s 'organizations' must list organization IDs."
                )
            for org in organizations:
                if bound.setdefault(org, issuer) != issuer:
                    raise ConfigurationError(f"KEYWARD_IDENTITY_PROVIDERS: organization {org!r} is bound to two IdPs.")
        if any(provider.issuer == issuer for provider in providers):
            raise ConfigurationError(f"KEYWARD_IDENTITY_PROVIDERS: {issuer} is listed twice.")
        jwks_json = entry.get("jwks_json")
        providers.append(
            IdentityProvider(
                issuer=issuer,
                audience=audience,
                jwks_url=entry.get("jwks_url") or None,
                jwks_json=json.dumps(jwks_json) if isinstance(jwks_json, dict) else (jwks_json or None),
                org_claim=entry.get("org_claim", single.org_claim),
                groups_claim=entry.get("groups_claim", single.groups_claim),
                admin_group=entry.get("admin_group", single.admin_group),
                name_claim=entry.get("name_claim", single.name_claim),
                email_claim=entry.get("email_claim", single.email_claim),
                organizations=frozenset(organizations) if organizations is not None else None,
            )
        )
    return tuple(providers)


def _provider_clients(raw: str) -> tuple[PreconfiguredClient, ...]:
    """KEYWARD_PROVIDER_CLIENTS: a JSON list of ``{client_id, name, redirect_uris, flows,
    signing_alg?, organizations?}``. Each redirect URI is held to the registration rule where the
    provider first reads the list (chalicelib/provider/clients.py), the one place that rule lives."""
    if not raw.strip():
        return ()
    name = "KEYWARD_PROVIDER_CLIENTS"
    try:
        entries = json.loads(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a JSON list of relying parties.") from None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ConfigurationError(f"{name} must be a JSON list of objects.")
    known = {"client_id", "name", "redirect_uris", "flows", "signing_alg", "organizations"}
    clients: list[PreconfiguredClient] = []
    for number, entry in enumerate(entries, start=1):
        client_id = entry.get("client_id")
        if not isinstance(client_id, str) or not 0 < len(client_id) <= 128 or not client_id.isprintable():
            raise ConfigurationError(f"{name}: client {number} needs a 'client_id' of 1 to 128 printable characters.")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ConfigurationError(f"{name}: {client_id}: unknown field(s) {', '.join(unknown)}.")
        if any(client.client_id == client_id for client in clients):
            raise ConfigurationError(f"{name}: {client_id} is listed twice.")
        display = entry.get("name")
        if not isinstance(display, str) or not display.strip():
            raise ConfigurationError(f"{name}: {client_id} needs a 'name'.")
        uris = entry.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(uri, str) and uri for uri in uris):
            raise ConfigurationError(f"{name}: {client_id}'s 'redirect_uris' must be a non-empty list of URLs.")
        flows = entry.get("flows")
        if (
            not isinstance(flows, list)
            or not flows
            or not all(isinstance(flow, str) and flow in PROVIDER_FLOWS for flow in flows)
        ):
            raise ConfigurationError(
                f"{name}: {client_id}'s 'flows' must be a non-empty list of {', '.join(PROVIDER_FLOWS)}."
            )
        signing_alg = entry.get("signing_alg", "RS256")
        if signing_alg not in PROVIDER_SIGNING_ALGS:
            raise ConfigurationError(
                f"{name}: {client_id}'s 'signing_alg' must be one of {', '.join(PROVIDER_SIGNING_ALGS)}."
            )
        organizations = entry.get("organizations")
        if organizations is not None and (
            not isinstance(organizations, list)
            or not organizations
            or not all(isinstance(org, str) and org for org in organizations)
        ):
            raise ConfigurationError(
                f"{name}: {client_id}'s 'organizations' must list organization IDs, or be left out for any."
            )
        clients.append(
            PreconfiguredClient(
                client_id=client_id,
                name=display.strip(),
                redirect_uris=tuple(uris),
                flows=frozenset(flows),
                signing_alg=signing_alg,
                organizations=frozenset(organizations) if organizations is not None else None,
            )
        )
    return tuple(clients)


def checked_issuer(issuer: str) -> str:
    """The provider's issuer, refused unless an https URL (http only for localhost) with no query
    or fragment, as OpenID Connect Discovery §3 asks. Checked where the provider first uses it,
    not at load: packaging reads the settings with the template's placeholders in them."""
    local = issuer.startswith(("http://localhost", "http://127.0.0.1"))
    if not (issuer.startswith("https://") or local) or "?" in issuer or "#" in issuer:
        raise ConfigurationError(
            f"KEYWARD_PROVIDER_ISSUER must be an https URL without query or fragment, not {issuer!r}"
        )
    return issuer


def load(env: Mapping[str, str]) -> Settings:
    """Build the settings from an environment mapping (``os.environ`` in production)."""
    prefix = env.get("KEYWARD_TABLE_PREFIX", "keyward-")
    origins = tuple(
        o.strip() for o in env.get("KEYWARD_ALLOWED_ORIGINS", "http://localhost:8000").split(",") if o.strip()
    )
    jwks_url = env.get("KEYWARD_JWKS_URL") or None
    jwks_json = env.get("KEYWARD_JWKS_JSON") or None
    # No default: a deployment that forgot to name its stage must not pass for the local one.
    stage = env.get("KEYWARD_STAGE") or None
    dev_idp_key_file = env.get("KEYWARD_DEV_IDP_KEY_FILE") or None
    single = IdentityProvider(
        issuer=env.get("KEYWARD_OIDC_ISSUER", "http://localhost:8000/dev-idp"),
        audience=env.get("KEYWARD_OIDC_AUDIENCE", "keyward-local"),
        jwks_url=jwks_url,
        jwks_json=jwks_json,
        org_claim=env.get("KEYWARD_ORG_CLAIM", "org"),
        groups_claim=env.get("KEYWARD_GROUPS_CLAIM", "groups"),
        admin_group=env.get("KEYWARD_ADMIN_GROUP", "keyward-admins"),
        name_claim=env.get("KEYWARD_NAME_CLAIM", "name"),
        email_claim=env.get("KEYWARD_EMAIL_CLAIM", "email"),
        organizations=None,
    )
    # Unknown organizations are created on first login only where anyone may run one (locally).
    org_creation = env.get("KEYWARD_ORG_CREATION") or ("on_first_login" if stage == "local" else "operator")
    if org_creation not in ORG_CREATION_MODES:
        raise ConfigurationError(
            f"KEYWARD_ORG_CREATION must be one of {', '.join(ORG_CREATION_MODES)}, not {org_creation!r}"
        )
    if dev_idp_key_file is not None:
        # Whoever holds this key can sign in as anyone the JWKS trusts it for: never on AWS,
        # whatever the stage variable says.
        if stage != LOCAL_STAGE:
            raise ConfigurationError(f"KEYWARD_DEV_IDP_KEY_FILE is for the local stage only, not {stage!r}")
        if env.get("AWS_LAMBDA_FUNCTION_NAME"):
            raise ConfigurationError("KEYWARD_DEV_IDP_KEY_FILE is for the local stage only, never inside AWS Lambda")
    provider_key_dir = env.get("KEYWARD_PROVIDER_KEY_DIR") or None
    if provider_key_dir is not None and (stage != LOCAL_STAGE or env.get("AWS_LAMBDA_FUNCTION_NAME")):
        # A signing key in a file is one anyone reading the package or the disk could sign with.
        raise ConfigurationError(f"KEYWARD_PROVIDER_KEY_DIR is for the local stage only, not {stage!r}")
    aws_endpoint = env.get("KEYWARD_AWS_ENDPOINT") or None
    if aws_endpoint is not None and stage != LOCAL_STAGE:
        # Mail and audit events would go to whatever answers there instead of AWS.
        raise ConfigurationError(f"KEYWARD_AWS_ENDPOINT is for the local stage only, not {stage!r}")
    return Settings(
        stage=stage,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        dynamodb_endpoint=env.get("DYNAMODB_ENDPOINT") or None,
        tables=Tables(
            orgs=env.get("KEYWARD_ORGS_TABLE", prefix + "orgs"),
            members=env.get("KEYWARD_MEMBERS_TABLE", prefix + "members"),
            member_activity=env.get("KEYWARD_MEMBER_ACTIVITY_TABLE", prefix + "member-activity"),
            keys=env.get("KEYWARD_KEYS_TABLE", prefix + "keys"),
            credentials=env.get("KEYWARD_CREDENTIALS_TABLE", prefix + "credentials"),
            challenges=env.get("KEYWARD_CHALLENGES_TABLE", prefix + "challenges"),
            sessions=env.get("KEYWARD_SESSIONS_TABLE", prefix + "sessions-v2"),
            backup_credentials=env.get("KEYWARD_BACKUP_CREDENTIALS_TABLE", prefix + "backup-credentials"),
            throttles=env.get("KEYWARD_THROTTLES_TABLE", prefix + "throttles"),
            audit=env.get("KEYWARD_AUDIT_TABLE", prefix + "audit-log"),
            legacy_audit=env.get("KEYWARD_LEGACY_AUDIT_TABLE", prefix + "audit"),
            authenticator_models=env.get("KEYWARD_AUTHENTICATOR_MODELS_TABLE", prefix + "authenticator-models"),
            enrollment_passes=env.get("KEYWARD_ENROLLMENT_PASSES_TABLE", prefix + "enrollment-passes"),
            webhooks=env.get("KEYWARD_WEBHOOKS_TABLE", prefix + "webhooks"),
            deliveries=env.get("KEYWARD_DELIVERIES_TABLE", prefix + "deliveries"),
            webhook_changes=env.get("KEYWARD_WEBHOOK_CHANGES_TABLE", prefix + "webhook-changes"),
            relying_parties=env.get("KEYWARD_RELYING_PARTIES_TABLE", prefix + "relying-parties"),
            authorizations=env.get("KEYWARD_AUTHORIZATIONS_TABLE", prefix + "authorizations"),
            signing_keys=env.get("KEYWARD_SIGNING_KEYS_TABLE", prefix + "signing-keys"),
        ),
        rp_id=env.get("KEYWARD_RP_ID", "localhost"),
        rp_name=env.get("KEYWARD_RP_NAME", "keyward"),
        allowed_origins=origins,
        oidc_issuer=single.issuer,
        oidc_audience=single.audience,
        oidc_authorization_endpoint=env.get("KEYWARD_OIDC_AUTHORIZATION_ENDPOINT") or None,
        jwks_url=jwks_url,
        jwks_json=jwks_json,
        org_claim=single.org_claim,
        groups_claim=single.groups_claim,
        admin_group=single.admin_group,
        name_claim=single.name_claim,
        email_claim=single.email_claim,
        identity_providers=_identity_providers(env, single),
        org_creation=org_creation,
        session_lifetime_seconds=_integer(env, "KEYWARD_SESSION_LIFETIME_SECONDS", 12 * 3600),
        session_idle_seconds=_integer(env, "KEYWARD_SESSION_IDLE_SECONDS", 3600),
        reauth_window_seconds=_integer(env, "KEYWARD_REAUTH_WINDOW_SECONDS", 15 * 60),
        challenge_lifetime_seconds=_integer(env, "KEYWARD_CHALLENGE_LIFETIME_SECONDS", 300),
        max_body_bytes=_integer(env, "KEYWARD_MAX_BODY_BYTES", 64 * 1024),
        max_keys_per_member=_integer(env, "KEYWARD_MAX_KEYS_PER_MEMBER", 20),
        orgs_stream_arn=env.get(
            "KEYWARD_ORGS_STREAM_ARN",
            f"arn:aws:dynamodb:us-east-1:000000000000:table/{prefix}orgs/stream/local",
        ),
        invalidation_reserve_seconds=_integer(env, "KEYWARD_INVALIDATION_RESERVE_SECONDS", 60),
        audit_retention_days=_integer(env, "KEYWARD_AUDIT_RETENTION_DAYS", 400),
        log_level=_log_level(env),
        audit_stream_arn=env.get(
            "KEYWARD_AUDIT_STREAM_ARN",
            f"arn:aws:dynamodb:us-east-1:000000000000:table/{prefix}audit-log/stream/local",
        ),
        mail_from=env.get("KEYWARD_MAIL_FROM", "").strip(),
        event_bus=env.get("KEYWARD_EVENT_BUS", "").strip(),
        aws_endpoint=aws_endpoint,
        webhook_disable_after_failures=_integer(env, "KEYWARD_WEBHOOK_DISABLE_AFTER_FAILURES", 10),
        webhook_secret_key=env.get("KEYWARD_WEBHOOK_SECRET_KEY", "").strip() or "alias/keyward-webhook-secrets",
        backup_login_max_failures=_integer(env, "KEYWARD_BACKUP_LOGIN_MAX_FAILURES", 5),
        backup_login_window_seconds=_integer(env, "KEYWARD_BACKUP_LOGIN_WINDOW_SECONDS", 15 * 60),
        org_login_rate=_integer(env, "KEYWARD_ORG_LOGIN_RATE", DEFAULT_ORG_LOGIN_RATE, minimum=0),
        enrollment_pass_max_failures=_integer(env, "KEYWARD_ENROLLMENT_PASS_MAX_FAILURES", 5),
        enrollment_pass_window_seconds=_integer(env, "KEYWARD_ENROLLMENT_PASS_WINDOW_SECONDS", 15 * 60),
        dev_idp_key_file=dev_idp_key_file,
        mds_url=env.get("KEYWARD_MDS_URL", "https://mds3.fidoalliance.org/"),
        extra_authenticator_roots=_extra_authenticators(env.get("KEYWARD_EXTRA_AUTHENTICATOR_ROOTS")),
        # Without a trailing slash, so that paths append to it.
        provider_issuer=(env.get("KEYWARD_PROVIDER_ISSUER") or "http://localhost:8000").strip().rstrip("/"),
        provider_key_dir=provider_key_dir,
        authorizer_require_mfa=_flag(env, "KEYWARD_AUTHORIZER_REQUIRE_MFA", True),
        provider_clients=_provider_clients(env.get("KEYWARD_PROVIDER_CLIENTS") or ""),
        provider_rs256_key=env.get("KEYWARD_PROVIDER_RS256_KEY", "").strip() or None,
        provider_es256_key=env.get("KEYWARD_PROVIDER_ES256_KEY", "").strip() or None,
    )


@functools.cache
def settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return load(os.environ)
