"""Authorization at the OpenID provider: a relying party asks whether a member just proved a key.

The rules, in the order a request meets them:

- **Who is asking, where to answer.** The ``client_id`` must name a registered relying party and
  ``redirect_uri`` be one it registered, compared exactly; until both hold, keyward answers with
  an error page and never redirects (RFC 6749 §4.1.2.1). Every later refusal goes back to the
  redirect URI as an OAuth error, with ``state``.
- **What it may ask.** ``response_type=code`` (the authorization code flow) with PKCE ``S256``
  (RFC 7636; required of every client, as RFC 9700 §2.1.1 recommends), or ``response_type=id_token``
  with ``response_mode=form_post`` and a ``nonce`` — Entra ID's external authentication method
  profile (the profile's "Microsoft Entra ID call to the external identity provider"). Each only if
  the client registered that flow. ``scope`` must hold ``openid``; ``request``/``request_uri`` are
  not supported (OIDC Core §6).
- **Who the person is.** keyward is the second factor, never the first: it learns who is asking
  from an ``id_token_hint`` of the organization's own IdP, verified as ``POST /auth/login``
  verifies ID tokens (signature, issuer bound to the organization, audience) but accepting a
  token up to :data:`HINT_GRACE_SECONDS` past its expiry, since Entra issues its hint expired on
  purpose ("Default id_token_hint claims"); or, without a hint, from the member's keyward session
  in that browser. A hint for another organization than the client's, and a hint and session that
  name different people, are refused.
- **The key check.** The member proves a key under the organization's policy: the MFA login's
  check for a session that owes it, a step-up's for an active one (``access.mfa``,
  ``access.stepup``: no ceremony of its own), with a challenge bound to this request. Only a
  session whose proof the assurance rule counts (``Standing.VERIFIED``) is authorized; a member
  without a key, or whose key the policy refuses, is told why and the client gets ``access_denied``.
  A check made before the request counts only when the client allowed it with ``max_age`` and did
  not send ``prompt=login`` (OIDC Core §3.1.2.1).
- **Once.** A request is answered once, by a write conditional on ``used_at`` being absent; it
  expires after :data:`REQUEST_LIFETIME` (Entra abandons its own state after about ten minutes).
  A code is random, stored only as its SHA-256, bound to the client, redirect URI, PKCE challenge,
  nonce and keyward session, and redeemed once (chalicelib/provider/token_endpoint.py).

Every authorization and refusal is an audit event written with the change it records.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from pynamodb.exceptions import UpdateError

from chalicelib.access import assurance, identity
from chalicelib.access.actions import Action
from chalicelib.base import audit, clock, metrics
from chalicelib.base.context import Caller, SessionState
from chalicelib.base.errors import (
    AuthenticatorNotAllowed,
    AuthorizationRequestNotFound,
    ChallengeMismatch,
    ClientOfAnotherOrganization,
    HintMismatch,
    InvalidAuthorizationRequest,
    InvalidRedirectUri,
    MalformedRequest,
    NotAllowed,
    NotAuthenticated,
    Refusal,
    RuleViolation,
    SecurityKeyRequired,
    UnknownClient,
)
from chalicelib.base.models import Authorization
from chalicelib.base.storage import ConditionsFailed, Item, condition_failed, transaction
from chalicelib.provider import clients, discovery, tokens
from chalicelib.provider.clients import Client

if TYPE_CHECKING:
    from chalicelib.access.mfa import Assertion
    from chalicelib.ceremony.credentials import CeremonyOptions

REQUEST_LIFETIME = timedelta(minutes=10)
# RFC 6749 §4.1.2: "a maximum authorization code lifetime of 10 minutes is RECOMMENDED"; a
# client redeems its code within seconds of the redirect.
CODE_LIFETIME = timedelta(minutes=1)
# Entra's hint is issued already expired; the profile names no bound, Entra's own state lasts
# about ten minutes, and so may a hint.
HINT_GRACE_SECONDS = 600
_HOUSEKEEPING_DELAY = timedelta(hours=1)

_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{32}")
# RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is 43 characters.
_CODE_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_LIMITS = {"state": 2048, "nonce": 512, "scope": 512, "acr_values": 512, "claims": 4096, "id_token_hint": 16384}
# Entra sends these too; OAuth ignores parameters it does not know (RFC 6749 §3.1).
_SINGLE = (
    "client_id", "redirect_uri", "response_type", "response_mode", "scope", "state", "nonce", "code_challenge",
    "code_challenge_method", "prompt", "max_age", "claims", "acr_values", "id_token_hint", "request", "request_uri",
)  # fmt: skip


@dataclass(frozen=True)
class Response:
    """The answer to the client: its redirect URI, how to carry the parameters there (a query
    string, or a form the browser posts: OAuth 2.0 Form Post Response Mode), and the parameters."""

    redirect_uri: str
    mode: str
    params: dict[str, str]

    def location(self) -> str:
        separator = "&" if "?" in self.redirect_uri else "?"
        return f"{self.redirect_uri}{separator}{urlencode(self.params)}"

    def as_json(self) -> dict[str, Any]:
        return {"redirect_uri": self.redirect_uri, "mode": self.mode, "params": self.params}


@dataclass(frozen=True)
class Pending:
    """A stored request, waiting for the member's key check on keyward's page."""

    request_id: str
    client: Client
    redirect_uri: str
    member_hint: str | None


@dataclass(frozen=True)
class Finished:
    """A request answered: the response to send the browser with, why it was refused (if it
    was), and the session's new token when the step changed it."""

    response: Response
    refusal: Refusal | None = None
    token: str | None = None


@dataclass
class _Request:
    """A pending request as read back from its item."""

    item: Authorization
    client: Client
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        return self.item.authorization_id.removeprefix("request#")

    @property
    def hint(self) -> dict[str, Any] | None:
        hint = self.details.get("hint")
        return dict(hint) if hint else None


# --- the request ---------------------------------------------------------------------------------


def _single(params: Mapping[str, list[str]]) -> dict[str, str]:
    """Each parameter's one value; RFC 6749 §3.1: none may be sent more than once."""
    found: dict[str, str] = {}
    for name in _SINGLE:
        values = params.get(name) or []
        if len(values) > 1:
            raise InvalidAuthorizationRequest(f"'{name}' is sent more than once.")
        if values and values[0] != "":
            if len(values[0]) > _LIMITS.get(name, 2048):
                raise InvalidAuthorizationRequest(f"'{name}' is too long.")
            found[name] = values[0]
    return found


def _response_of(found: dict[str, str], redirect_uri: str) -> Response:
    """Where an error goes: form_post when the client asked for it, else the query (RFC 6749 §4.1.2.1)."""
    mode = "form_post" if found.get("response_mode") == "form_post" else "query"
    return Response(redirect_uri=redirect_uri, mode=mode, params={})


def _error(response: Response, *, error: str, description: str, state: str | None) -> Response:
    params = {"error": error, "error_description": description}
    if state is not None:
        params["state"] = state
    # RFC 9207 §2: every authorization response names the issuer, errors and form posts too;
    # discovery announces it, and a client that reads the announcement rejects a response without.
    params["iss"] = discovery.issuer()
    return Response(redirect_uri=response.redirect_uri, mode=response.mode, params=params)


def begin(*, params: Mapping[str, list[str]], client: audit.Client) -> Pending | Response:
    """``GET|POST /oidc/authorize``: validate the request and store it for keyward's page; or the
    error response to send the browser to.

    Raises:
        UnknownClient: no relying party has the ``client_id``.
        InvalidRedirectUri: no ``redirect_uri``, or not one the client registered.
    """
    client_ids = params.get("client_id") or []
    redirect_uris = params.get("redirect_uri") or []
    if len(client_ids) != 1:
        raise UnknownClient("The request names no single 'client_id'.")
    relying_party = clients.client_for(client_ids[0])
    if len(redirect_uris) != 1 or not clients.redirect_allowed(relying_party, redirect_uris[0]):
        raise InvalidRedirectUri("The 'redirect_uri' is missing or not one this client registered.")
    redirect_uri = redirect_uris[0]
    state_values = params.get("state") or []
    state = state_values[0] if len(state_values) == 1 and len(state_values[0]) <= _LIMITS["state"] else None
    response = Response(redirect_uri=redirect_uri, mode="query", params={})
    try:
        found = _single(params)
        response = _response_of(found, redirect_uri)
        details = _checked(found, relying_party)
        hint = _hint(found.get("id_token_hint"), relying_party)
    except (InvalidAuthorizationRequest, NotAuthenticated, NotAllowed) as refusal:
        # An operator's client serves many organizations: before a hint names one, none can be told.
        if relying_party.org_id is not None:
            _record_refusal(
                org_id=relying_party.org_id, client=client, client_id=relying_party.client_id, refusal=refusal
            )
        return _error(response, error=_oauth_error(refusal), description=str(refusal), state=state)
    request_id = secrets.token_urlsafe(24)
    created = clock.now()
    expires = created + REQUEST_LIFETIME
    if hint is not None:
        details["hint"] = hint
    Authorization(
        f"request#{request_id}",
        client_id=relying_party.client_id,
        org_id=hint["org_id"] if hint else relying_party.org_id,
        user_id=hint["user_id"] if hint else None,
        details=details,
        created_at=created,
        expires_at=expires,
        ttl=expires + _HOUSEKEEPING_DELAY,
    ).save(condition=Authorization.authorization_id.does_not_exist())
    return Pending(
        request_id=request_id,
        client=relying_party,
        redirect_uri=redirect_uri,
        member_hint=hint["user_id"] if hint else None,
    )


def _checked(found: dict[str, str], client: Client) -> dict[str, Any]:
    """What the request asks for, checked against what the provider and the client support."""
    if "request" in found:
        raise InvalidAuthorizationRequest("Request objects are not supported.", error="request_not_supported")
    if "request_uri" in found:
        raise InvalidAuthorizationRequest("Request objects are not supported.", error="request_uri_not_supported")
    response_type = found.get("response_type")
    if response_type not in clients.FLOWS:
        raise InvalidAuthorizationRequest(
            "'response_type' must be 'code' or 'id_token'.", error="unsupported_response_type"
        )
    if response_type not in client.flows:
        raise InvalidAuthorizationRequest(
            f"This client is not registered for response_type={response_type}.", error="unauthorized_client"
        )
    if "openid" not in found.get("scope", "").split(" "):
        raise InvalidAuthorizationRequest("'scope' must include 'openid'.", error="invalid_scope")
    prompt = set(found.get("prompt", "").split())
    if "none" in prompt:
        # The key check is the point of asking keyward: it always needs the member.
        raise InvalidAuthorizationRequest("A security key check needs the member.", error="interaction_required")
    max_age: int | None = None
    if "max_age" in found:
        if not found["max_age"].isdigit() or len(found["max_age"]) > 9:
            raise InvalidAuthorizationRequest("'max_age' must be a number of seconds.")
        max_age = int(found["max_age"])
    claims: dict[str, Any] = {}
    if "claims" in found:
        try:
            claims = json.loads(found["claims"])
        except ValueError:
            raise InvalidAuthorizationRequest("'claims' must be a JSON object (OIDC Core §5.5).") from None
        if not isinstance(claims, dict):
            raise InvalidAuthorizationRequest("'claims' must be a JSON object (OIDC Core §5.5).")
    details: dict[str, Any] = {
        "redirect_uri": found["redirect_uri"],
        "response_type": response_type,
        "scope": "openid",
        "prompt_login": "login" in prompt,
        "claims": json.dumps(claims),
        "acr_values": found.get("acr_values", ""),
    }
    if response_type == "code":
        if found.get("response_mode", "query") != "query":
            raise InvalidAuthorizationRequest("The code flow answers in the query ('response_mode=query').")
        if found.get("code_challenge_method") != "S256" or not _CODE_CHALLENGE.fullmatch(
            found.get("code_challenge", "")
        ):
            raise InvalidAuthorizationRequest(
                "PKCE is required: send 'code_challenge' with 'code_challenge_method=S256'."
            )
        details["code_challenge"] = found["code_challenge"]
        details["response_mode"] = "query"
    else:
        # Entra's profile: the ID token comes back in a form post, and carries the request's nonce.
        if found.get("response_mode") != "form_post":
            raise InvalidAuthorizationRequest("response_type=id_token is answered with 'response_mode=form_post'.")
        if "nonce" not in found:
            raise InvalidAuthorizationRequest("response_type=id_token requires a 'nonce' (OIDC Core §3.2.2.1).")
        details["response_mode"] = "form_post"
    for name in ("state", "nonce"):
        if name in found:
            details[name] = found[name]
    if max_age is not None:
        details["max_age"] = max_age
    return details


def _hint(id_token_hint: str | None, client: Client) -> dict[str, Any] | None:
    """Who the hint names, once it verified and names the client's organization.

    Raises:
        InvalidIdToken, NonceMismatch, WrongIdentityProvider (via ``identity``), IdentityProviderUnavailable.
        ClientOfAnotherOrganization: the hint names another organization than the client's.
    """
    if id_token_hint is None:
        return None
    vouched = identity.verify_id_token(id_token=id_token_hint, expired_grace_seconds=HINT_GRACE_SECONDS)
    if not client.serves(vouched.org_id):
        raise ClientOfAnotherOrganization("The hint names an organization this client does not serve.")
    hint = {
        "org_id": vouched.org_id,
        "user_id": vouched.user_id,
        "name": vouched.name,
        "email": vouched.email,
        "admin": vouched.admin,
        "issuer": vouched.issuer,
    }
    if vouched.tenant_id is not None:
        hint["tenant_id"] = vouched.tenant_id
    return hint


def _oauth_error(refusal: Refusal) -> str:
    if isinstance(refusal, InvalidAuthorizationRequest):
        return refusal.error
    return "access_denied"


# --- the page's steps ----------------------------------------------------------------------------


def _pending(request_id: str) -> _Request:
    """The pending request ``request_id``, unanswered and unexpired.

    Raises:
        AuthorizationRequestNotFound: unknown, answered already, or expired.
    """
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise AuthorizationRequestNotFound("No pending authorization request has this ID.")
    try:
        item = Authorization.get(f"request#{request_id}", consistent_read=True)
    except Authorization.DoesNotExist:
        raise AuthorizationRequestNotFound("No pending authorization request has this ID.") from None
    if item.used_at is not None or item.expires_at <= clock.now():
        raise AuthorizationRequestNotFound("This authorization request was answered already or has expired.")
    return _Request(item=item, client=clients.client_for(item.client_id), details=details_of(item))


def describe(*, request_id: str) -> Pending:
    """The client and member a pending request is for, for the page to show.

    Raises:
        AuthorizationRequestNotFound.
    """
    request = _pending(request_id)
    hint = request.hint
    return Pending(
        request_id=request_id,
        client=request.client,
        redirect_uri=request.details["redirect_uri"],
        member_hint=hint["user_id"] if hint else None,
    )


def session_from_hint(*, request_id: str, client: audit.Client) -> identity.SignIn | Finished:
    """``POST /oidc/authorize/{request_id}/session``: the keyward session of the person the
    request's hint names, in the state their key check starts from (as ``POST /auth/login``
    starts one); or the request answered with a refusal.

    Raises:
        AuthorizationRequestNotFound; MalformedRequest: the request carries no hint.
    """
    request = _pending(request_id)
    hint = request.hint
    if hint is None:
        raise MalformedRequest("This authorization request carries no id_token_hint: sign in to keyward first.")
    vouched = identity.Identity(
        org_id=hint["org_id"],
        user_id=hint["user_id"],
        name=hint.get("name", ""),
        email=hint.get("email", ""),
        admin=bool(hint.get("admin")),
        issuer=hint["issuer"],
        tenant_id=hint.get("tenant_id"),
    )
    try:
        return identity.sign_in_as(identity=vouched, client=client, method="id_token_hint", key_required=True)
    except (NotAuthenticated, NotAllowed, RuleViolation) as refusal:
        return _refuse(request, refusal=refusal, client=client, user_id=vouched.user_id)


def _check_caller(request: _Request, caller: Caller) -> None:
    """The session must be a member's of the client's organization, and the hint's person.

    Raises:
        ClientOfAnotherOrganization, HintMismatch.
    """
    if not request.client.serves(caller.session.org_id):
        raise ClientOfAnotherOrganization("This app is registered by another organization than yours.")
    hint = request.hint
    if hint is not None and (hint["org_id"], hint["user_id"]) != (caller.session.org_id, caller.session.user_id):
        raise HintMismatch("You are signed in to keyward as someone else than the person this sign-in is for.")


def _pending_for(request_id: str, caller: Caller) -> _Request:
    """The pending request, for a key check by ``caller``. Where there is none, a session that
    can make no key check at all is told why (as every route tells it), not that the request is
    unknown.

    Raises:
        AuthorizationRequestNotFound, and :func:`_check_action`'s refusals.
    """
    try:
        return _pending(request_id)
    except AuthorizationRequestNotFound:
        can_check_a_key(caller)
        raise


def can_check_a_key(caller: Caller) -> None:
    """Refuse a session that can make no key check at all, with the reason every route gives it.

    Raises:
        :func:`_check_action`'s refusals.
    """
    _check_action(caller)


def _check_action(caller: Caller) -> Action:
    """The key check this session can make (the MFA login's, or a step-up), or why none.

    Raises:
        SecurityKeyRequired: the member holds no key.
        AuthenticatorNotAllowed: the organization accepts none of the member's keys.
        and the assurance rule's refusals (backup credentials, a session owing registration).
    """
    if caller.is_backup:
        assurance.require(caller, Action.STEP_UP)  # refuses: backup credentials hold no key
    if caller.state is SessionState.REGISTRATION_REQUIRED and caller.member.key_count == 0:
        assurance.require(caller, Action.STEP_UP)  # refuses: the organization wants a key registered first
    if caller.member.key_count == 0:
        raise SecurityKeyRequired("You hold no security key: register one in the keyward console first.")
    standing = assurance.standing_of(caller)
    if standing is assurance.Standing.REPLACING_KEY:
        raise AuthenticatorNotAllowed("The organization accepts none of your security keys: register one it accepts.")
    action = Action.MFA_CHECK if caller.state is SessionState.MFA_REQUIRED else Action.STEP_UP
    assurance.require(caller, action)
    return action


def _fresh_enough(request: _Request, caller: Caller) -> datetime | None:
    """The session's earlier key check, when the client allowed one as old as it is (``max_age``
    without ``prompt=login``, OIDC Core §3.1.2.1) and the assurance rule still counts it."""
    max_age = request.details.get("max_age")
    if max_age is None or request.details.get("prompt_login"):
        return None
    checked_at = caller.session.key_checked_at
    if checked_at is None or assurance.standing_of(caller) is not assurance.Standing.VERIFIED:
        return None
    return checked_at if clock.now() - checked_at <= timedelta(seconds=int(max_age)) else None


def options(*, request_id: str, caller: Caller) -> CeremonyOptions | Finished:
    """``POST /oidc/authorize/{request_id}/options``: a challenge for one of the member's keys,
    bound to this request; the request answered at once when a recent enough check counts (see
    :func:`_fresh_enough`); or answered with a refusal.

    Raises:
        AuthorizationRequestNotFound: no such pending request (a session that can make no key
            check gets its own refusal instead).
    """
    from chalicelib.access import mfa, stepup

    request = _pending_for(request_id, caller)
    try:
        _check_caller(request, caller)
        earlier = _fresh_enough(request, caller)
        if earlier is not None:
            return _authorize(request, caller=caller, checked_at=earlier, user_verified=False)
        action = _check_action(caller)
        started = mfa.options(caller=caller) if action is Action.MFA_CHECK else stepup.options(caller=caller)
    except (NotAuthenticated, NotAllowed, RuleViolation, InvalidAuthorizationRequest) as refusal:
        return _refuse(request, refusal=refusal, client=caller.client, user_id=caller.session.user_id)
    try:
        request.item.update(
            actions=[Authorization.details.set({**request.details, "challenge_id": started.challenge_id})],
            condition=Authorization.used_at.does_not_exist(),
        )
    except UpdateError as error:
        if condition_failed(error):
            raise AuthorizationRequestNotFound("This authorization request was answered already.") from None
        raise
    return started


def verify(*, request_id: str, caller: Caller, assertion: Assertion) -> Finished:
    """``POST /oidc/authorize/{request_id}/verify``: check the assertion against this request's
    challenge, record the check as the session's (the MFA login or a step-up), and answer the
    request: a code, or the ID token to post back; or the refusal.

    Raises:
        AuthorizationRequestNotFound: no such pending request (a session that can make no key
            check gets its own refusal instead).
    """
    from chalicelib.access import mfa, stepup

    request = _pending_for(request_id, caller)
    token: str | None = None
    try:
        _check_caller(request, caller)
        if assertion.challenge_id != request.details.get("challenge_id"):
            raise ChallengeMismatch("The challenge was issued for another authorization request.")
        action = _check_action(caller)
        if action is Action.MFA_CHECK:
            token = mfa.verify(caller=caller, assertion=assertion).token
        else:
            stepup.verify(caller=caller, assertion=assertion)
        if assurance.standing_of(caller) is not assurance.Standing.VERIFIED or caller.session.key_checked_at is None:
            raise AuthenticatorNotAllowed("The organization does not accept this security key: use another.")
        finished = _authorize(
            request,
            caller=caller,
            checked_at=caller.session.key_checked_at,
            user_verified=assertion.response.user_verified,
        )
    except (NotAuthenticated, NotAllowed, RuleViolation, InvalidAuthorizationRequest) as refusal:
        finished = _refuse(request, refusal=refusal, client=caller.client, user_id=caller.session.user_id)
    return Finished(response=finished.response, refusal=finished.refusal, token=token)


def cancel(*, request_id: str, client: audit.Client) -> Finished:
    """``POST /oidc/authorize/{request_id}/cancel``: the person declined; the client gets ``access_denied``.

    Raises:
        AuthorizationRequestNotFound.
    """
    request = _pending(request_id)
    refusal = InvalidAuthorizationRequest("The member declined the security key check.", error="access_denied")
    return _refuse(request, refusal=refusal, client=client, user_id=request.item.user_id)


# --- the answer -----------------------------------------------------------------------------------


def details_of(item: Authorization) -> dict[str, Any]:
    """An item's details as plain values (PynamoDB reads a raw map as a MapAttribute)."""
    return item.details.as_dict() if item.details is not None else {}


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 §4.2, S256: BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _authorize(request: _Request, *, caller: Caller, checked_at: datetime, user_verified: bool) -> Finished:
    """Answer the request for the caller's key check at ``checked_at``: the code, or the ID token.

    Raises:
        InvalidAuthorizationRequest (``access_denied``): an essential acr or amr a key check cannot meet.
        AuthorizationRequestNotFound: another request answered it meanwhile.
    """
    details = request.details
    hint = request.hint or {}
    context = tokens.authentication_context(
        claims_request=json.loads(details.get("claims") or "{}"),
        acr_values=tuple(str(details.get("acr_values", "")).split()),
        user_verified=user_verified,
    )
    session = caller.session
    subject = tokens.Subject(
        org_id=session.org_id,
        user_id=session.user_id,
        session_id=session.session_id,
        auth_time=checked_at,
        context=context,
        admin=bool(caller.member.admin),
        tenant_id=hint.get("tenant_id"),
    )
    client = request.client
    now = clock.now()
    params: dict[str, str] = {}
    code_item: Authorization | None = None
    if details["response_type"] == "code":
        code = secrets.token_urlsafe(32)
        expires = now + CODE_LIFETIME
        code_item = Authorization(
            f"code#{code_hash(code)}",
            client_id=client.client_id,
            org_id=session.org_id,
            user_id=session.user_id,
            details={
                "redirect_uri": details["redirect_uri"],
                "code_challenge": details["code_challenge"],
                "scope": details["scope"],
                "session_id": session.session_id,
                "auth_time": checked_at.isoformat(),
                "acr": context.acr,
                "amr": list(context.amr),
                "admin": bool(caller.member.admin),
                **({"nonce": details["nonce"]} if "nonce" in details else {}),
                **({"tenant_id": hint["tenant_id"]} if "tenant_id" in hint else {}),
            },
            created_at=now,
            expires_at=expires,
            ttl=expires + _HOUSEKEEPING_DELAY,
        )
        params["code"] = code
    else:
        params["id_token"] = tokens.id_token(
            subject=subject, client_id=client.client_id, algorithm=client.signing_alg, nonce=details.get("nonce")
        )
    params["iss"] = discovery.issuer()  # RFC 9207, as in _error
    if "state" in details:
        params["state"] = details["state"]
    event = audit.event(
        org_id=session.org_id,
        actor=caller.actor,
        action="oidc.authorized",
        target=client.client_id,
        user_id=session.user_id,
        client=caller.client,
        details={
            "client_id": client.client_id,
            "response_type": details["response_type"],
            "session_id": session.session_id,
            "acr": context.acr,
            "amr": list(context.amr),
        },
        spread_over=caller.org,
    )
    try:
        with transaction() as write:
            _answer(write, request, now)
            if code_item is not None:
                write.save(Item.CODE, code_item, condition=Authorization.authorization_id.does_not_exist())
            write.save(Item.AUDIT, event)
    except ConditionsFailed:
        raise AuthorizationRequestNotFound("This authorization request was answered already.") from None
    metrics.count("ProviderAuthorizations", client_id=client.client_id, org=session.org_id, user=session.user_id)
    return Finished(
        response=Response(redirect_uri=details["redirect_uri"], mode=details["response_mode"], params=params)
    )


def _answer(write: Any, request: _Request, now: datetime) -> None:
    write.update(
        Item.AUTHORIZATION,
        Authorization(request.item.authorization_id),
        actions=[Authorization.used_at.set(now)],
        condition=Authorization.used_at.does_not_exist() & (Authorization.expires_at > now),
    )


def _refuse(request: _Request, *, refusal: Refusal, client: audit.Client, user_id: str | None) -> Finished:
    """Answer the request with the refusal's OAuth error, audited with it.

    Raises:
        AuthorizationRequestNotFound: another request answered it meanwhile.
    """
    details = request.details
    response = Response(redirect_uri=details["redirect_uri"], mode=details["response_mode"], params={})
    now = clock.now()
    # The organization the request is for: its client's, or, for an operator's client, the hint's.
    org_id = request.item.org_id or request.client.org_id
    try:
        with transaction() as write:
            _answer(write, request, now)
            if org_id is not None:
                write.save(
                    Item.AUDIT,
                    _refusal_event(
                        org_id=org_id,
                        client=client,
                        client_id=request.client.client_id,
                        refusal=refusal,
                        user_id=user_id,
                    ),
                )
    except ConditionsFailed:
        raise AuthorizationRequestNotFound("This authorization request was answered already.") from None
    _count_refusal(reason=refusal.code, client_id=request.client.client_id, org_id=org_id)
    return Finished(
        response=_error(response, error=_oauth_error(refusal), description=str(refusal), state=details.get("state")),
        refusal=refusal,
    )


def _refusal_event(*, org_id: str, client: audit.Client, client_id: str, refusal: Refusal, user_id: str | None) -> Any:
    return audit.event(
        org_id=org_id,
        actor=audit.actor_of(user_id) if user_id else audit.SYSTEM,
        action="oidc.refused",
        target=client_id,
        user_id=user_id,
        client=client,
        details={"client_id": client_id, "reason": refusal.code, "error": _oauth_error(refusal)},
    )


def _record_refusal(*, org_id: str, client: audit.Client, client_id: str, refusal: Refusal) -> None:
    _refusal_event(org_id=org_id, client=client, client_id=client_id, refusal=refusal, user_id=None).save()
    _count_refusal(reason=refusal.code, client_id=client_id, org_id=org_id)


def _count_refusal(*, reason: str, client_id: str, org_id: str | None) -> None:
    """The metric ``ProviderRefusals`` by reason, as the refusal's audit event records it; the token
    endpoint counts its own (token_endpoint.py) in the same metric."""
    metrics.count("ProviderRefusals", by=("Reason", reason), client_id=client_id, org=org_id)
