"""keyward's DynamoDB tables, as PynamoDB models.

Table names and the endpoint come from :mod:`chalicelib.base.config`. Keys are chosen so that every
hot path is a key lookup or a query on one partition: an organization's members and security
keys share the organization's ID as their partition key. What a sign-in storm writes is spread:
sessions are keyed by their own ID and found by organization through a write-sharded index,
audit events are spread over several partitions of their day (see :class:`AuditEvent`), and a
login records its time on the member's own item (:class:`MemberActivity`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import (
    AllProjection,
    GlobalSecondaryIndex,
    IncludeProjection,
    KeysOnlyProjection,
    LocalSecondaryIndex,
)
from pynamodb.models import Model

from chalicelib.base.config import settings

_settings = settings()


class _KeywardMeta:
    region = _settings.region
    host = _settings.dynamodb_endpoint
    connect_timeout_seconds = 2
    read_timeout_seconds = 5
    # PynamoDB retries throttled and failed calls itself; a Lambda should give up quickly.
    max_retry_attempts = 2


class EnforcementFlag(BooleanAttribute):
    """``mfa_enforced``, read fail-safe: a value of another DynamoDB type than BOOL (``{"S": "true"}``
    typed by an operator in the AWS console) reads as enforced, rather than failing every read of
    the organization. The stream function reports such a change as a failed record."""

    def get_value(self, value: dict[str, Any]) -> bool:
        return bool(value.get("BOOL", True))


class Invalidation(MapAttribute[str, Any]):
    """The bulk deletion of an organization's sessions after an enforcement, and how far it got."""

    # The enforcement it belongs to: sessions of older generations are ended.
    generation = NumberAttribute()
    state = UnicodeAttribute()  # "running" | "done"
    sessions_ended = NumberAttribute(default=0)
    started_at = UTCDateTimeAttribute()
    finished_at = UTCDateTimeAttribute(null=True)
    # Where the next invocation resumes: the last session ID already handled.
    cursor = UnicodeAttribute(null=True)
    # Incremented when one invocation runs out of time; the stream record it causes starts the next.
    handoffs = NumberAttribute(default=0)


class ComplianceRecount(MapAttribute[str, Any]):
    """The recount of an organization's compliant members after its policy or a model's status
    changed, and how far it got (see chalicelib/counters/compliance.py)."""

    version = NumberAttribute()  # the compliance_version it counts for
    state = UnicodeAttribute()  # "recounting" | "done"
    started_at = UTCDateTimeAttribute()
    finished_at = UTCDateTimeAttribute(null=True)
    # The last member (user ID) already counted: where the next invocation resumes.
    cursor = UnicodeAttribute(null=True)
    # Incremented when one invocation runs out of time; the stream record it causes starts the next.
    handoffs = NumberAttribute(default=0)


class Organization(Model):
    """An organization: its members sign in through its IdP; admins may enforce MFA."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.orgs
        # The stream function reacts to enforcement being switched on, from the API or console.
        stream_view_type = "NEW_AND_OLD_IMAGES"

    org_id = UnicodeAttribute(hash_key=True)
    created_at = UTCDateTimeAttribute()
    mfa_enforced = EnforcementFlag(default=False)
    enforced_at = UTCDateTimeAttribute(null=True)
    enforced_by = UnicodeAttribute(null=True)
    # The session that enforced MFA survives the enforcement it caused.
    enforcing_session_id = UnicodeAttribute(null=True)
    # Incremented by every enforcement; sessions older than the current one are ended.
    enforcement_generation = NumberAttribute(default=0)
    invalidation = Invalidation(null=True)
    # The organization's backup credentials (their table is keyed by the globally unique key ID).
    backup_key_ids = UnicodeSetAttribute(null=True)
    # Which authenticators count as security keys here (chalicelib.ceremony.authenticator_policy);
    # absent means the default policy. Read with every session, so enforcing it costs no read.
    authenticator_policy: MapAttribute[str, Any] = MapAttribute(null=True)
    # Who may register a first security key: "open" (absent) or "pass_required"
    # (see chalicelib/keys/enrollment_passes.py).
    enrollment = UnicodeAttribute(null=True)
    # Coverage counters, changed in the transactions that create members and change whether a
    # member holds a key (see chalicelib/counters/coverage.py): admin pages read them instead of every member.
    members_total = NumberAttribute(null=True)
    members_with_key = NumberAttribute(null=True)
    # How long keyless members may keep working after an enforcement (chalicelib/access/grace.py).
    grace_period_hours = NumberAttribute(null=True)
    # The latest enforcement's time; unlike enforced_at it survives relaxing, so that a deleted
    # session's token can still be told why it ended (chalicelib/access/lifecycle.py).
    last_enforced_at = UTCDateTimeAttribute(null=True)
    # The IdP issuer whose tokens may sign in to this organization (chalicelib/access/tenancy.py).
    issuer = UnicodeAttribute(null=True)
    # Admins, and admins holding a key: kept with the member counters (chalicelib/counters/coverage.py).
    admins_total = NumberAttribute(null=True)
    admins_with_key = NumberAttribute(null=True)
    # Members holding a key that complies with the organization's authenticator policy, counted
    # under compliance_version (chalicelib/counters/compliance.py); absent until the first policy change.
    compliance_version = NumberAttribute(null=True)
    members_compliant = NumberAttribute(null=True)
    # Members without a complying key whose keys the policy's grace period spares: they count as
    # compliant until the period ends, decided when the figure is read.
    members_spared = NumberAttribute(null=True)
    compliance_recount = ComplianceRecount(null=True)
    # Logins a second this organization may start, set by the operator (chalicelib/access/login_rate.py);
    # absent means the deployment's KEYWARD_ORG_LOGIN_RATE, 0 no limit. Read with every login.
    login_rate = NumberAttribute(null=True)
    # How many shards its audit events are spread over, from the hour each count names
    # (``{"2026-12-07T21": 8}``); absent means one (chalicelib/base/audit_shards.py). Set by the
    # operator only: read with every request, written on no sign-in path.
    audit_shards: MapAttribute[str, Any] = MapAttribute(null=True)


class MembersByCoverage(GlobalSecondaryIndex["Member"]):
    """An organization's members by how many keys they hold: ``<org>#none|one|many`` → user ID.

    Sparse and keys-only: a member appears once the coverage attribute is set, and only a change
    of bucket (not every login) writes to the index.
    """

    class Meta:
        index_name = "by-coverage"
        projection = KeysOnlyProjection()

    coverage = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)


class AdminsWithoutKey(GlobalSecondaryIndex["Member"]):
    """An organization's admins who hold no security key: sparse and keys-only, an admin appears
    while ``admin_without_key`` (their organization's ID) is set, which only the transactions
    that change their key count or admin flag do."""

    class Meta:
        index_name = "admins-without-key"
        projection = KeysOnlyProjection()

    admin_without_key = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)


class Member(Model):
    """A user of an organization, created on their first login."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.members

    org_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute(default="")
    email = UnicodeAttribute(default="")
    admin = BooleanAttribute(default=False)
    # How many security keys the member holds; every key write changes it in the same
    # transaction, so conditions on it protect the last-key rule under concurrency.
    key_count = NumberAttribute(default=0)
    # ``<org>#none|one|many`` from key_count, for MembersByCoverage; kept with key_count.
    coverage = UnicodeAttribute(null=True)
    by_coverage = MembersByCoverage()
    # The organization's ID while the member is an admin without a key (AdminsWithoutKey).
    admin_without_key = UnicodeAttribute(null=True)
    admins_without_key = AdminsWithoutKey()
    # Bumped by every change of the member's keys: a recount of their compliance that read the
    # keys before such a change must not write its figure.
    key_changes = NumberAttribute(null=True)
    # How many of the member's keys comply with the organization's authenticator policy, counted
    # under the organization's compliance_version named here (chalicelib/counters/compliance.py).
    compliant_keys = NumberAttribute(null=True)
    # Of the others, how many the policy's grace period spares (they count until it ends).
    spared_keys = NumberAttribute(null=True)
    compliance_version = NumberAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    # The last sign-in of a member who has not signed in since it moved to MemberActivity; no
    # longer written.
    last_login_at = UTCDateTimeAttribute(null=True)
    # The member's credentials as ceremonies list them (allowCredentials, excludeCredentials):
    # key ID -> {"id": base64url credential ID, "transports": [...]}, kept in the transactions
    # that add and delete keys, so that options need no query. Absent for members whose keys
    # predate it (keyward then queries their keys) and for members without keys.
    credentials: MapAttribute[str, Any] = MapAttribute(null=True)
    # Incremented when the member goes from no key to a key: their sessions of an older
    # generation whose proof is not a key the member holds have ended.
    session_generation = NumberAttribute(default=0)
    # Incremented when every session of the member is ended at once (the member signing out
    # everywhere else, an admin ending their sessions): sessions started under an older value
    # have ended, whether or not the eventually consistent index listed them for deletion.
    # Absent means 0.
    sign_out_generation = NumberAttribute(null=True)


def member_key(org_id: str, user_id: str) -> str:
    """One member across organizations, as a single key: ``<org>#<user>``. Organization IDs hold
    no ``#`` (tenancy.valid_org_id), so the first ``#`` ends the organization's ID and a user ID
    may hold any character, ``#`` included: two members never share a key."""
    return f"{org_id}#{user_id}"


class MemberActivity(Model):
    """When a member last signed in, on an item of its own keyed per member.

    Every login of a returning member records its time. On the member item, keyed (organization,
    member), a sign-in storm of one organization wrote one partition key at every login, capping
    the organization's sign-in rate at DynamoDB's 1,000 write units a second per key; keyed per
    member, those writes spread over as many keys as there are members. The member item is
    written by a login only when a profile claim changed.

    The item is deleted with its member (offboarding), and names the member as created: a
    login's write of it is conditional on that, so a login whose member was offboarded (or
    offboarded and created again) meanwhile starts no session, without a condition on the member
    item.
    """

    class Meta(_KeywardMeta):
        table_name = _settings.tables.member_activity

    # member_key(org_id, user_id)
    member = UnicodeAttribute(hash_key=True)
    # The member's created_at; absent for a member stored before members recorded it.
    member_created_at = UTCDateTimeAttribute(null=True)
    last_login_at = UTCDateTimeAttribute()


class KeysByMember(LocalSecondaryIndex["SecurityKey"]):
    """A member's security keys, read with strong consistency."""

    class Meta:
        index_name = "by-member"
        projection = AllProjection()

    org_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)


class KeysByModel(GlobalSecondaryIndex["SecurityKey"]):
    """Every stored key of one authenticator model, across organizations: when the FIDO Metadata
    Service reports a model compromised, its keys are found without a scan."""

    class Meta:
        index_name = "by-model"
        projection = IncludeProjection(["user_id", "model_status"])

    model_id = UnicodeAttribute(hash_key=True)
    key_id = UnicodeAttribute(range_key=True)


class SecurityKey(Model):
    """A member's registered FIDO2/WebAuthn credential."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.keys

    org_id = UnicodeAttribute(hash_key=True)
    # Derived from the credential ID, so an assertion leads straight to its key.
    key_id = UnicodeAttribute(range_key=True)
    user_id = UnicodeAttribute()
    by_member = KeysByMember()

    name = UnicodeAttribute()
    credential_id = BinaryAttribute(legacy_encoding=False)
    public_key = BinaryAttribute(legacy_encoding=False)
    algorithm = NumberAttribute()
    # The counter, last use and backup state as of registration (or of the last check before
    # they moved to the key's CredentialClaim, which holds them since: ceremony/credentials.py).
    sign_count = NumberAttribute(default=0)
    aaguid = UnicodeAttribute()
    attestation_format = UnicodeAttribute()
    transports = ListAttribute(of=UnicodeAttribute, default=list)
    backup_eligible = BooleanAttribute(default=False)
    backed_up = BooleanAttribute(default=False)
    created_at = UTCDateTimeAttribute()
    last_used_at = UTCDateTimeAttribute(null=True)
    # What the FIDO Metadata Service says of the key's model, as of registration and every
    # metadata refresh since: its ID there (the AAGUID, or the attestation certificate's key
    # identifier for U2F keys), its description, and its latest status.
    model_id = UnicodeAttribute(null=True)
    by_model = KeysByModel()
    model = UnicodeAttribute(null=True)
    model_status = UnicodeAttribute(null=True)
    # Whether the attestation statement verified up to a root the metadata lists for the model.
    attested = BooleanAttribute(default=False)


class CredentialClaim(Model):
    """Which key holds a credential ID, making credential IDs unique across all organizations;
    and the key's use, which every check of the key writes.

    The use lives here, keyed by the key alone, rather than on the key, whose partition is its
    organization's: an organization's MFA checks and step-ups then spread over as many partitions
    as it has keys (docs/performance.md, the capacity model). Created and deleted with its key.
    """

    class Meta(_KeywardMeta):
        table_name = _settings.tables.credentials

    key_id = UnicodeAttribute(hash_key=True)
    org_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    # The key's signature counter, last use and backup state as of its last check; absent until
    # the first check since they moved here (the key item's own then still hold them).
    sign_count = NumberAttribute(null=True)
    last_used_at = UTCDateTimeAttribute(null=True)
    backed_up = BooleanAttribute(null=True)


class Challenge(Model):
    """A WebAuthn challenge, bound to one session, user and ceremony, usable once."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.challenges

    challenge_id = UnicodeAttribute(hash_key=True)
    challenge = BinaryAttribute(legacy_encoding=False)
    ceremony = UnicodeAttribute()
    org_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    session_id = UnicodeAttribute()
    expires_at = UTCDateTimeAttribute()
    # Only housekeeping: expiry is checked on use, DynamoDB TTL may lag by days.
    ttl = TTLAttribute()


# How many partitions of the by-org-shard index one organization's sessions spread over. Sized
# from the writes of a sign-in storm. The index holds the whole session item: about 800 bytes
# with a browser's user agent (one write unit), about 1.9 KB at the longest keyward stores (an
# organization ID of 128 and a user ID of 255 characters, a user agent of 512: two units).
# A sign-in writes its session twice (the login, then the MFA verify that rotates its token);
# counting each index write as transactional (twice the units), a sign-in costs the index 8
# units at most. At 10,000 sign-ins a second in one organization that is 80,000 units a second,
# 625 per shard over 128 shards: below the 1,000 a partition takes, with room for step-ups and
# an uneven draw of members to shards (typical items, counted plainly, make it 156). A
# clean-up's deletions are paced by its batches. Changing it on a deployed table needs the
# sessions re-keyed: a member's sessions would sit in a shard their reads no longer ask.
SESSION_SHARDS = 128


def _member_digest(user_id: str) -> bytes:
    """A digest of the user ID, stable across processes (unlike ``hash()``): the member's shard
    and the sort key's name for them both come from it."""
    return hashlib.sha256(user_id.encode()).digest()


def session_shard(user_id: str) -> int:
    """The shard of a member's sessions, so that every session of one member is in one shard and a
    member's sessions are one query."""
    return int.from_bytes(_member_digest(user_id)[:8], "big") % SESSION_SHARDS


def org_shard_key(org_id: str, shard: int) -> str:
    """The by-org-shard index's partition key: ``<org>#<shard>``."""
    return f"{org_id}#{shard}"


def member_session_key(user_id: str, session_id: str) -> str:
    """The by-org-shard index's sort key: a member's sessions are together, oldest first
    (session IDs begin with their creation time).

    The member is named by a fixed-length digest of their user ID, not the ID itself: a sort key
    holds at most 1,024 bytes, and a user ID of 255 characters may take 1,020 in UTF-8.
    """
    digest = base64.urlsafe_b64encode(_member_digest(user_id)[:16]).rstrip(b"=").decode()
    return f"{digest}#{session_id}"


class SessionsByOrgShard(GlobalSecondaryIndex["Session"]):
    """An organization's sessions, spread over :data:`SESSION_SHARDS` partitions by member:
    ``<org>#<shard>`` → ``<digest of the user ID>#<session>``. A member's sessions are one query of their shard;
    the organization's are one query per shard.

    Global, so eventually consistent: a session written a moment ago may be missing from a read.
    Nothing that ends sessions relies on finding it — see Member.sign_out_generation and
    docs/architecture.md ("Sessions").
    """

    class Meta:
        index_name = "by-org-shard"
        # Everything: GET /me/sessions shows the sessions and decides which still work.
        projection = AllProjection()

    org_shard = UnicodeAttribute(hash_key=True)
    member_session = UnicodeAttribute(range_key=True)


class Session(Model):
    """A login: the hash of its bearer token, its state and whose it is.

    Keyed by the session ID alone, so that one organization's sessions spread over as many
    partitions as DynamoDB likes: a token names its session, and its lookup stays one GetItem
    (in the transactional read of resolve()). The organization's and member's sessions are
    found through :class:`SessionsByOrgShard`.
    """

    class Meta(_KeywardMeta):
        table_name = _settings.tables.sessions

    session_id = UnicodeAttribute(hash_key=True)
    org_id = UnicodeAttribute()
    org_shard = UnicodeAttribute()
    member_session = UnicodeAttribute()
    by_org_shard = SessionsByOrgShard()

    @classmethod
    def of_member(cls, session_id: str, *, org_id: str, user_id: str, **attributes: Any) -> Session:
        """A new session item of this member, its index keys derived from its names."""
        return cls(
            session_id,
            org_id=org_id,
            user_id=user_id,
            org_shard=org_shard_key(org_id, session_shard(user_id)),
            member_session=member_session_key(user_id, session_id),
            **attributes,
        )

    token_hash = UnicodeAttribute()
    state = UnicodeAttribute()
    user_id = UnicodeAttribute()
    admin = BooleanAttribute(default=False)
    created_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute()
    enforcement_generation = NumberAttribute(default=0)
    # The member's session generation when the session started (see Member.session_generation).
    member_generation = NumberAttribute(default=0)
    # The member's sign-out generation when the session started (see Member.sign_out_generation).
    sign_out_generation = NumberAttribute(default=0)
    # Whether the organization enforced MFA when the session started: a session that started
    # without it ends when the flag is switched on, even before an enforcement is recorded.
    # Absent on sessions from before keyward recorded it.
    org_enforced_at_start = BooleanAttribute(null=True)
    # The session's proof: the key it last proved possession of — by passing MFA, stepping up or
    # registering it — and when. chalicelib/access/assurance.py decides what the session may do from it.
    verified_key_id = UnicodeAttribute(null=True)
    key_checked_at = UTCDateTimeAttribute(null=True)
    # The organization's policy version under which that key counted when it was proved (None:
    # it did not count); under enforcement the proof lapses when the version moves on.
    verified_key_counts_under = NumberAttribute(null=True)
    # Set where the key counted only by the policy's grace period: the proof lapses at its end.
    verified_key_counts_until = UTCDateTimeAttribute(null=True)
    source_ip = UnicodeAttribute(null=True)
    user_agent = UnicodeAttribute(null=True)
    # Refreshed at most every few minutes, so that requests stay one round trip.
    last_seen_at = UTCDateTimeAttribute(null=True)
    ttl = TTLAttribute()


class BackupCredential(Model):
    """An organization's break-glass login for admins: a key ID and the slow hash of its secret."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.backup_credentials

    # Globally unique: a backup login names no organization.
    key_id = UnicodeAttribute(hash_key=True)
    org_id = UnicodeAttribute()
    created_by = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    last_used_at = UTCDateTimeAttribute(null=True)
    # scrypt parameters are stored with the hash, so they can be raised for new credentials.
    secret_hash = BinaryAttribute(legacy_encoding=False)
    salt = BinaryAttribute(legacy_encoding=False)
    scrypt_n = NumberAttribute()
    scrypt_r = NumberAttribute()
    scrypt_p = NumberAttribute()
    # As Member.sign_out_generation, for the sessions of these backup credentials.
    sign_out_generation = NumberAttribute(null=True)


class Throttle(Model):
    """Failed attempts against one subject (a backup key ID from one source, a member's enrolment
    codes) in the current window; or one shard of an organization's logins in one second
    (``logins#<org>#<second>#<shard>``, chalicelib/access/login_rate.py): only ``logins`` and ``ttl``."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.throttles

    subject = UnicodeAttribute(hash_key=True)
    window_start = UTCDateTimeAttribute()
    failures = NumberAttribute(default=0)
    logins = NumberAttribute(null=True)
    ttl = TTLAttribute()


class PassesByMember(LocalSecondaryIndex["EnrollmentPass"]):
    """A member's enrolment passes, read with strong consistency."""

    class Meta:
        index_name = "by-member"
        projection = AllProjection()

    org_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)


class EnrollmentPass(Model):
    """An admin's single-use, time-limited permission for one member to register a first key."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.enrollment_passes

    org_id = UnicodeAttribute(hash_key=True)
    pass_id = UnicodeAttribute(range_key=True)
    user_id = UnicodeAttribute()
    by_member = PassesByMember()

    # SHA-256 of the code; the code itself is shown once, to the admin who issued the pass.
    code_hash = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    created_by = UnicodeAttribute()
    expires_at = UTCDateTimeAttribute()
    used_at = UTCDateTimeAttribute(null=True)
    used_key_id = UnicodeAttribute(null=True)
    revoked_at = UTCDateTimeAttribute(null=True)
    revoked_by = UnicodeAttribute(null=True)
    # The ``created_at`` of the member it was issued to: a pass is that member's alone, not one
    # re-created under the same user ID after an offboarding. Absent on passes issued before it
    # was recorded (chalicelib/keys/enrollment_passes.py ``of_member``).
    member_created_at = UTCDateTimeAttribute(null=True)
    # Only housekeeping: expiry is checked on use.
    ttl = TTLAttribute()


class AuditEvent(Model):
    """One security event of an organization, kept for the audit retention period.

    Keyed for spread (chalicelib/base/audit_shards.py): an organization's events of one day are
    spread over its shards, ``<org>#<day>#<shard>``, so that a storm of sign-ins, each writing an
    event in its transaction, heats no single partition key; reading the log merges the shards.
    """

    class Meta(_KeywardMeta):
        table_name = _settings.tables.audit
        # The outbox: every saved event reaches the delivery stream function (mail, EventBridge, webhooks).
        stream_view_type = "NEW_IMAGE"

    # ``<org>#<day>#<shard>`` (audit_shards.shard_key).
    shard_key = UnicodeAttribute(hash_key=True)
    # The event's time and a random suffix: sorts by time, never collides.
    event_key = UnicodeAttribute(range_key=True)
    org_id = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    actor = UnicodeAttribute()
    # member, backup_credentials or operator: the name alone cannot tell (an IdP user may be "operator").
    actor_kind = UnicodeAttribute(null=True)
    action = UnicodeAttribute()
    target = UnicodeAttribute(null=True)
    # The member the event is about (for filtering), whoever the actor was.
    user_id = UnicodeAttribute(null=True)
    source_ip = UnicodeAttribute(null=True)
    user_agent = UnicodeAttribute(null=True)
    details: MapAttribute[str, Any] = MapAttribute(null=True)
    # Set on a copy made by `python -m keyward migrate audit`: the event was delivered from the
    # table it was copied from, so the outbox does not deliver it again.
    migrated = BooleanAttribute(null=True)
    ttl = TTLAttribute()


class LegacyAuditEvent(Model):
    """An audit event in the table from before events were spread over shards (one partition key
    an organization): read only by `python -m keyward migrate audit`, which copies it to
    :class:`AuditEvent`. Its stream still reaches the delivery function, so that events written
    before the new table took over are delivered."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.legacy_audit
        stream_view_type = "NEW_IMAGE"

    org_id = UnicodeAttribute(hash_key=True)
    event_key = UnicodeAttribute(range_key=True)
    at = UTCDateTimeAttribute()
    actor = UnicodeAttribute()
    actor_kind = UnicodeAttribute(null=True)
    action = UnicodeAttribute()
    target = UnicodeAttribute(null=True)
    user_id = UnicodeAttribute(null=True)
    source_ip = UnicodeAttribute(null=True)
    user_agent = UnicodeAttribute(null=True)
    details: MapAttribute[str, Any] = MapAttribute(null=True)
    ttl = TTLAttribute()


class AuthenticatorModel(Model):
    """One authenticator model of the FIDO Metadata Service, as of the last verified refresh; the
    item ``#current`` says which BLOB that was."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.authenticator_models

    # An AAGUID, or ``ski:<hex>`` for a U2F model's attestation certificate key identifier.
    model_id = UnicodeAttribute(hash_key=True)
    description = UnicodeAttribute(null=True)
    # Every status report's status, oldest first.
    statuses = ListAttribute(of=UnicodeAttribute, default=list)
    # The metadata entry (without its icon) as JSON, for verifying attestation statements.
    entry = UnicodeAttribute(null=True)
    blob_number = NumberAttribute()
    next_update = UnicodeAttribute(null=True)
    loaded_at = UTCDateTimeAttribute(null=True)


class Webhook(Model):
    """An organization's webhook endpoint: where its audit events are posted, signed with its secret."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.webhooks

    org_id = UnicodeAttribute(hash_key=True)
    webhook_id = UnicodeAttribute(range_key=True)
    url = UnicodeAttribute()
    # Audit actions to send, or "*" for every one.
    events = UnicodeSetAttribute()
    description = UnicodeAttribute(default="")
    # The signing secret ("whsec_..."), encrypted with KMS under an encryption context naming the
    # organization and the endpoint (chalicelib/delivery/webhook_secrets.py): only delivery decrypts it.
    sealed_secret = BinaryAttribute(legacy_encoding=False, null=True)
    # The secret in clear, as endpoints created before secrets were sealed hold it, until
    # `python -m keyward webhooks seal-secrets` (or a change of the endpoint) seals it.
    secret = UnicodeAttribute(null=True)
    state = UnicodeAttribute()  # "enabled" | "disabled"
    # Failed deliveries in a row; the endpoint is disabled when they reach the configured limit.
    consecutive_failures = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute()
    created_by = UnicodeAttribute()
    disabled_at = UTCDateTimeAttribute(null=True)
    # When the current run of failed deliveries began; absent while deliveries go through.
    failing_since = UTCDateTimeAttribute(null=True)
    # When an admin last enabled it again: it is sent the events recorded from then on, not the
    # ones recorded while it was disabled.
    enabled_at = UTCDateTimeAttribute(null=True)
    # Incremented by every change of its URL, events or state (each recorded as a WebhookChange):
    # a change is written only over the revision it read. Absent on endpoints from before.
    revision = NumberAttribute(null=True)


class EndpointSettings(MapAttribute[str, Any]):
    """What an endpoint was sent, and where, between two of its changes."""

    url = UnicodeAttribute()
    # Audit actions to send, or "*" for every one.
    events = UnicodeSetAttribute()
    state = UnicodeAttribute()  # "enabled" | "disabled"


class WebhookChange(Model):
    """One change of an endpoint (created, changed, enabled, disabled, deleted), written in the
    transaction of its audit event and under that event's key: each event is delivered to the
    endpoints as these say they were when it was recorded (chalicelib/delivery/webhooks.py)."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.webhook_changes

    org_id = UnicodeAttribute(hash_key=True)
    # "<event key>#<webhook id>": an organization's changes sort by the time of their events.
    change_key = UnicodeAttribute(range_key=True)
    event_key = UnicodeAttribute()
    webhook_id = UnicodeAttribute()
    action = UnicodeAttribute()
    # Absent before a creation and after a deletion.
    before = EndpointSettings(null=True)
    after = EndpointSettings(null=True)
    # A deletion keeps the sealed secret: the endpoint's last events are signed with it.
    sealed_secret = BinaryAttribute(legacy_encoding=False, null=True)
    # Kept as long as the events it serves.
    ttl = TTLAttribute()


class Delivery(Model):
    """One channel's delivery of one audit event: its idempotency record and its last attempt."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.deliveries

    # Where it goes: "webhook#<org>#<webhook id>", "mail#<org>#<user id>" or "events#<org>".
    channel = UnicodeAttribute(hash_key=True)
    # The audit event's key: a channel's deliveries sort by the time of their events.
    event_key = UnicodeAttribute(range_key=True)
    org_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    action = UnicodeAttribute()
    state = UnicodeAttribute()  # "sending" | "delivered" | "failed" | "skipped" | "rejected"
    attempts = NumberAttribute(default=0)
    last_attempt_at = UTCDateTimeAttribute()
    status_code = NumberAttribute(null=True)
    # Why it failed or was skipped (no email address, endpoint disabled, HTTP 500...).
    detail = UnicodeAttribute(null=True)
    # How long the endpoint took to answer the last attempt, when it answered.
    duration_ms = NumberAttribute(null=True)
    # A redelivery (an admin sent the event again) is a delivery of its own, under the key of the
    # request's audit event: this is the key of the event it sends again.
    redelivers = UnicodeAttribute(null=True)
    # The partition key of the audit event that went out (AuditEvent.shard_key), to read it again
    # by; absent on deliveries from before events were spread, now on shard 0 of their day.
    shard_key = UnicodeAttribute(null=True)
    ttl = TTLAttribute()


class ClientsByOrg(GlobalSecondaryIndex["RelyingParty"]):
    """An organization's relying parties, for its admins' list."""

    class Meta:
        index_name = "by-org"
        projection = AllProjection()

    org_id = UnicodeAttribute(hash_key=True)
    client_id = UnicodeAttribute(range_key=True)


class RelyingParty(Model):
    """An app or IdP that asks keyward, as its OpenID provider, whether a member proved a key
    (chalicelib/provider/clients.py). Registered by an organization's admins."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.relying_parties

    # Globally unique: a token request names the client, not the organization.
    client_id = UnicodeAttribute(hash_key=True)
    org_id = UnicodeAttribute()
    by_org = ClientsByOrg()
    name = UnicodeAttribute()
    # Matched exactly, never by prefix (RFC 9700 §4.1.3).
    redirect_uris = ListAttribute(of=UnicodeAttribute)
    # Which authorization flows it may use: "code" (code + PKCE), "id_token" (form_post).
    flows = UnicodeSetAttribute()
    # SHA-256 of the client secret, shown once at creation; absent for a public client.
    secret_hash = UnicodeAttribute(null=True)
    # The algorithm its ID tokens are signed with: "RS256" (the default, Entra's) or "ES256".
    signing_alg = UnicodeAttribute(default="RS256")
    created_at = UTCDateTimeAttribute()
    created_by = UnicodeAttribute()
    updated_at = UTCDateTimeAttribute(null=True)


class Authorization(Model):
    """One authorization at the OpenID provider (chalicelib/provider/authorization.py): first the
    pending request a member answers with a key check, then the code the client redeems once."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.authorizations

    # "request#<random id>" while pending; "code#<SHA-256 of the code>" once issued.
    authorization_id = UnicodeAttribute(hash_key=True)
    client_id = UnicodeAttribute()
    org_id = UnicodeAttribute(null=True)
    user_id = UnicodeAttribute(null=True)
    # Everything else the request asked for and the check it got, as the provider reads them.
    details: MapAttribute[str, Any] = MapAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute()
    # Set, under a condition that it is not, when the request is answered or the code redeemed.
    used_at = UTCDateTimeAttribute(null=True)
    # Only housekeeping: expiry is checked on use.
    ttl = TTLAttribute()


class SigningKey(Model):
    """A key the OpenID provider signs tokens with (chalicelib/provider/signing.py): published in
    the JWKS while it signs and until the last token it signed has expired."""

    class Meta(_KeywardMeta):
        table_name = _settings.tables.signing_keys

    kid = UnicodeAttribute(hash_key=True)
    algorithm = UnicodeAttribute()  # "RS256" | "ES256"
    # The public key as a JWK (JSON), as the JWKS publishes it.
    public_jwk = UnicodeAttribute()
    # Where the private key is: a KMS key ARN on AWS, a file name under the local key directory.
    private_key_ref = UnicodeAttribute()
    state = UnicodeAttribute()  # "current" | "retired"
    created_at = UTCDateTimeAttribute()
    retired_at = UTCDateTimeAttribute(null=True)
    # Published in the JWKS until then: a retired key's last tokens have expired by it.
    published_until = UTCDateTimeAttribute(null=True)


ALL_MODELS: tuple[type[Model], ...] = (
    Organization,
    Member,
    MemberActivity,
    SecurityKey,
    CredentialClaim,
    Challenge,
    Session,
    BackupCredential,
    Throttle,
    AuditEvent,
    LegacyAuditEvent,
    AuthenticatorModel,
    EnrollmentPass,
    Webhook,
    Delivery,
    WebhookChange,
    RelyingParty,
    Authorization,
    SigningKey,
)


@functools.cache
def connection() -> Connection:
    """The connection for transactions, which may span several tables."""
    return Connection(
        region=_KeywardMeta.region,
        host=_KeywardMeta.host,
        connect_timeout_seconds=_KeywardMeta.connect_timeout_seconds,
        read_timeout_seconds=_KeywardMeta.read_timeout_seconds,
        max_retry_attempts=_KeywardMeta.max_retry_attempts,
    )
