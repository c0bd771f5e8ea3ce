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


class NonceMismatch(NotAuthenticated):
    """The ID token's ``nonce`` is not the one the client made for this sign-in (a replayed or
    injected token)."""


class MissingToken(NotAuthenticated):
    pass


class InvalidToken(NotAuthenticated):
    pass


class SessionExpired(NotAuthenticated):
    pass


class SessionEndedByEnforcement(NotAuthenticated):
    pass


class SessionEndedByNewKey(NotAuthenticated):
    """The member registered their first security key after this session started without one."""


class SessionIdle(NotAuthenticated):
    """The session went unused for longer than the idle timeout."""


class MfaRequired(NotAllowed):
    pass


class RegistrationRequired(NotAllowed):
    pass


class WrongSessionState(NotAllowed):
    pass


class AdminRequired(NotAllowed):
    pass


class ReauthenticationRequired(NotAllowed):
    """A sensitive action needs a recent security-key check (step up, or sign in again)."""


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


class BackupEligibilityChanged(NotAuthenticated):
    """The assertion's backup-eligible flag differs from the one stored at registration (§7.2)."""


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


class CannotOffboardYourself(NotAllowed):
    """Offboarding ends every session and deletes every key of the member: done to oneself it would
    take an admin's own way in at once (the organization's only admin's, perhaps), and their last
    key past the last-key rule. Another admin offboards them."""


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


class WebhookSecretKeyUnavailable(Unavailable):
    """KMS did not seal a webhook's signing secret: no endpoint was created or changed."""


class SigningKeyUnavailable(Unavailable):
    """KMS did not sign the OpenID provider's token (or give the public key of a key it records):
    no token was issued."""


class SecurityKeyRequired(RuleViolation):
    """A security key of one's own is needed: to enforce MFA, or to step up."""


class BackupCredentialsMissing(RuleViolation):
    """Enforcing MFA while the organization has no backup credentials, without saying so: once
    enforced, a lost IdP or lost keys leave no way back in."""


class MfaNotEnforced(RuleViolation):
    """Changing the grace period of an enforcement while MFA is not enforced: there is none to
    change, and enforcing is a decision of its own (``"enforced": true``), never a side effect."""


class AlreadyEnrolled(RuleViolation):
    """A session waiting for a first key cannot register one: the member holds a key already."""


class InvalidCursor(InvalidInput):
    pass


class InvalidationFailed(Exception):
    """DynamoDB kept refusing the bulk deletion of sessions; the stream record is retried."""

    def __init__(self, message: str, *, deleted: int) -> None:
        super().__init__(message)
        self.deleted = deleted


class MalformedEnforcementFlag(Exception):
    """An organization's ``mfa_enforced`` was given a value that is not a DynamoDB BOOL."""


class SessionNotFound(NotFound):
    pass


class BackupCredentialsNotFound(NotFound):
    pass


class InvalidBackupCredentials(NotAuthenticated):
    pass


class RateLimited(Refusal):
    """Too many attempts, or too many requests at once; try again after the window passes.

    ``retry_after``: the seconds until another attempt can pass, where keyward knows them (the
    answer's ``Retry-After``).
    """

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyAttempts(RateLimited):
    pass


class OrganizationRateLimited(RateLimited):
    """The organization started as many sessions this second as it may (chalicelib/access/login_rate.py)."""


class NotForBackupSessions(NotAllowed):
    """Backup credentials are for getting back in, not for holding security keys."""


# --- the organization's authenticator policy -----------------------------------------------------


class InvalidPolicy(InvalidInput):
    """An authenticator policy with an unknown setting or a malformed AAGUID."""


class InvalidGracePeriod(InvalidInput):
    """A policy change's grace period is not a whole number of hours within the bounds."""


class GracePeriodNotApplicable(RuleViolation):
    """A grace period with a policy change that stops counting no key (not stricter about stored
    keys than the policy in force, or for new registrations only)."""


class AuthenticatorNotAllowed(NotAllowed):
    """The organization's policy does not accept this authenticator model (AAGUID lists, or a
    model the FIDO Metadata Service reports compromised)."""


class AttestationRequired(NotAllowed):
    """The organization requires attestation, and the key sent none (or only self attestation)."""


class AttestationUntrusted(NotAllowed):
    """The attestation statement does not verify up to a root the metadata lists for the model."""


class UserVerificationRequired(NotAllowed):
    """The organization requires user verification (a PIN or biometric) and the key did not do it."""


class SyncedCredentialNotAllowed(NotAllowed):
    """The organization accepts only device-bound keys, and this credential can be synced."""


class MetadataRejected(Exception):
    """A FIDO Metadata Service BLOB did not verify, or is not newer than the one in use; the one
    in use stays."""


# --- enrolment passes -------------------------------------------------------------------------


class EnrollmentPassRequired(NotAllowed):
    """The organization requires an admin's enrolment pass for a member's first security key."""


class InvalidEnrollmentPass(NotAllowed):
    """The code is not one of the member's usable passes: wrong, used, revoked or expired."""


class EnrollmentPassNotFound(NotFound):
    pass


class EnrollmentPassUsed(RuleViolation):
    """A pass that was used cannot be revoked: the key it let in is deleted instead."""


# --- organizations and their members ----------------------------------------------------------


class UnknownOrganization(NotAuthenticated):
    """The ID token names an organization this deployment does not serve (yet)."""


class WrongIdentityProvider(NotAuthenticated):
    """The ID token's issuer is not the IdP the organization is bound to."""


class OrganizationExists(Exception):
    """An operator tried to create an organization that exists already."""


# --- audit streaming: webhooks and the audit log's time range -----------------------------------


class WebhookUrlRefused(InvalidInput):
    """Not a URL keyward posts to: not https, or resolving to a private, loopback or link-local address."""


class InvalidWebhookEvents(InvalidInput):
    pass


class WebhookNotFound(NotFound):
    pass


class WebhookDeliveryNotFound(NotFound):
    """No delivery of this endpoint has this ID (or it is older than deliveries are kept)."""


class WebhookDisabled(RuleViolation):
    """The endpoint is disabled: it is sent no event until an admin enables it."""


class InvalidTimeRange(InvalidInput):
    """``since``/``until`` are not ISO 8601 UTC timestamps, or ``since`` is not before ``until``."""


# --- the OpenID provider ------------------------------------------------------------------------


class UnknownClient(NotFound):
    """No relying party has this client ID (for this organization)."""


class InvalidClient(NotAuthenticated):
    """The relying party did not authenticate: wrong or missing client secret (RFC 6749 §5.2 ``invalid_client``)."""


class InvalidRedirectUri(InvalidInput):
    """A redirect URI keyward does not accept: at registration, not an absolute https URL (http
    only for a loopback host), a fragment, a wildcard, credentials, too many or none (RFC 9700
    §4.1.3, RFC 8252 §7.3); in an authorization request, missing or not one the client registered:
    keyward answers with an error page and never redirects there (RFC 6749 §4.1.2.1)."""


class InvalidClientRegistration(InvalidInput):
    """A relying party's name, flows, type or signing algorithm is not one keyward registers."""


class PublicClientHasNoSecret(RuleViolation):
    """A public client authenticates by PKCE alone: it has no secret to rotate."""


class InvalidAuthorizationRequest(InvalidInput):
    """An authorization request keyward cannot answer as asked; its OAuth ``error`` (RFC 6749
    §4.1.2.1, OIDC Core §3.1.2.6) goes back to the client's redirect URI."""

    def __init__(self, message: str, *, error: str = "invalid_request") -> None:
        super().__init__(message)
        self.error = error


class AuthorizationRequestNotFound(NotFound):
    """No pending authorization request has this ID: unknown, answered already, or expired."""


class HintMismatch(NotAllowed):
    """The authorization request's ``id_token_hint`` names another person than the keyward
    session in this browser."""


class ClientOfAnotherOrganization(NotAllowed):
    """The relying party is registered by another organization than the member's."""


class InvalidGrant(InvalidInput):
    """The code is unknown, expired, used already, issued to another client or redirect URI, its
    PKCE verifier does not match, or its session has ended (RFC 6749 §5.2 ``invalid_grant``)."""


class UnsupportedGrantType(InvalidInput):
    """The token endpoint grants ``authorization_code`` only (RFC 6749 §5.2 ``unsupported_grant_type``)."""
