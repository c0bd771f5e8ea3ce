"""The reasons keyward refuses a request.

Every refusal is a small exception class; its name is the stable reason code a client sees in
``Code``, its base class says which kind of refusal it is (and so which HTTP status the API layer
gives it). Domain modules raise these; only ``chalicelib.api.http`` knows about HTTP.
"""
from __future__ import annotations


class ConfigurationError(Exception):
    """The stage is configured wrongly; an operator has to fix it."""


class Refusal(Exception):
    """A request keyward refuses for a reason the caller can act on."""

    @property
    def code(self) -> str:
        return type(self).__name__


# --- kinds of refusal -------------------------------------------------------------------------

class InvalidInput(Refusal):
    """The request is malformed: it can never succeed as sent."""


class NotAuthenticated(Refusal):
    """No valid session, or a ceremony or login that did not verify."""


class NotAllowed(Refusal):
    """The caller is known but may not do this (role, session state)."""


class NotFound(Refusal):
    """The object does not exist for this caller."""


class RuleViolation(Refusal):
    """A rule that protects an invariant refuses the change."""


class TooLarge(Refusal):
    """The request body is larger than keyward accepts."""


class Unavailable(Refusal):
    """DynamoDB is throttling or failing; the request changed nothing and may be retried."""


# --- malformed input --------------------------------------------------------------------------

class BodyTooLarge(TooLarge):
    pass


class MalformedJson(InvalidInput):
    pass


class MalformedRequest(InvalidInput):
    """A field is missing, of the wrong type or out of range."""


class MalformedCredential(InvalidInput):
    """A WebAuthn credential that cannot even be parsed (base64url, JSON, CBOR)."""


class CredentialIdTooLong(InvalidInput):
    pass


class InvalidKeyName(InvalidInput):
    pass


# --- identity and sessions --------------------------------------------------------------------

class InvalidIdToken(NotAuthenticated):
    pass


class MissingToken(NotAuthenticated):
    pass


class InvalidToken(NotAuthenticated):
    pass


class SessionExpired(NotAuthenticated):
    pass


class SessionEndedByEnforcement(NotAuthenticated):
    pass


class MfaRequired(NotAllowed):
    pass


class RegistrationRequired(NotAllowed):
    pass


class WrongSessionState(NotAllowed):
    pass


class AdminRequired(NotAllowed):
    pass


# --- ceremonies -------------------------------------------------------------------------------

class ChallengeNotFound(NotAuthenticated):
    """Unknown challenge, or one that was already used."""


class ChallengeExpired(NotAuthenticated):
    pass


class ChallengeMismatch(NotAuthenticated):
    """The challenge belongs to another session, user or ceremony, or the response signs another."""


class OriginMismatch(NotAuthenticated):
    pass


class CrossOriginRefused(NotAuthenticated):
    pass


class RpIdMismatch(NotAuthenticated):
    pass


class UserNotPresent(NotAuthenticated):
    pass


class InvalidBackupFlags(NotAuthenticated):
    pass


class UnsupportedAlgorithm(NotAuthenticated):
    pass


class UnknownCredential(NotAuthenticated):
    """The credential is not one of the caller's security keys."""


class SignCountRegression(NotAuthenticated):
    """The authenticator's counter went backwards: a sign of a cloned key."""


class CeremonyFailed(NotAuthenticated):
    """The response did not verify (signature, attestation, client data type)."""


# --- security keys ----------------------------------------------------------------------------

class KeyNotFound(NotFound):
    pass


class MemberNotFound(NotFound):
    pass


class KeyAlreadyRegistered(RuleViolation):
    pass


class TooManyKeys(RuleViolation):
    pass


class LastKeyRequired(RuleViolation):
    pass


class ConcurrentChange(RuleViolation):
    """Another request changed the same records at the same time; retrying may succeed."""


class StorageUnavailable(Unavailable):
    pass


class IdentityProviderUnavailable(Unavailable):
    """The IdP's signing keys (JWKS) could not be fetched."""


class SecurityKeyRequired(RuleViolation):
    """An admin must hold a security key of their own before enforcing MFA."""


class InvalidCursor(InvalidInput):
    pass


class InvalidationFailed(Exception):
    """DynamoDB kept refusing the bulk deletion of sessions; the stream record is retried."""

    def __init__(self, message: str, *, deleted: int) -> None:
        super().__init__(message)
        self.deleted = deleted


class SessionNotFound(NotFound):
    pass


class BackupCredentialsNotFound(NotFound):
    pass


class InvalidBackupCredentials(NotAuthenticated):
    pass


class RateLimited(Refusal):
    """Too many failed attempts; try again after the window passes."""


class TooManyAttempts(RateLimited):
    pass


class NotForBackupSessions(NotAllowed):
    """Backup credentials are for getting back in, not for holding security keys."""


# --- audit streaming: webhooks and the audit log's time range -----------------------------------

class WebhookUrlRefused(InvalidInput):
    """Not a URL keyward posts to: not https, or resolving to a private, loopback or link-local address."""


class InvalidWebhookEvents(InvalidInput):
    pass


class WebhookNotFound(NotFound):
    pass


class InvalidTimeRange(InvalidInput):
    """``since``/``until`` are not ISO 8601 UTC timestamps, or ``since`` is not before ``until``."""
