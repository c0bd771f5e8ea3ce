"""Sign-in: the IdP step, the MFA step, and logout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint

from chalicelib.access.actions import Action
from chalicelib.api.http import (
    caller_of,
    caller_with,
    client_of,
    json_body,
    only_fields,
    route,
    string_field,
)
from chalicelib.api.views import login_body
from chalicelib.base import clock
from chalicelib.base.deferred import deferred

if TYPE_CHECKING:
    from chalicelib.access.mfa import Assertion

# Each is loaded by the first request of its own kind, not by every cold start.
if TYPE_CHECKING:
    from chalicelib.access import assurance, backup, identity, mfa, sessions, stepup
else:
    assurance = deferred("chalicelib.access.assurance")
    backup = deferred("chalicelib.access.backup")
    identity = deferred("chalicelib.access.identity")
    mfa = deferred("chalicelib.access.mfa")
    sessions = deferred("chalicelib.access.sessions")
    stepup = deferred("chalicelib.access.stepup")

auth = Blueprint(__name__)


@route(auth, "/auth/login", methods=["POST"])
def login() -> dict[str, Any]:
    body = json_body(auth.current_request)
    only_fields(body, {"id_token", "nonce"})
    nonce = string_field(body, "nonce", limit=256) if "nonce" in body else None
    signed_in = identity.sign_in(
        id_token=string_field(body, "id_token", limit=16384), nonce=nonce, client=client_of(auth.current_request)
    )
    return login_body(
        token=signed_in.issued.token, session=signed_in.issued.session, org=signed_in.org, member=signed_in.member
    )


@route(auth, "/auth/mfa/options", methods=["POST"])
def mfa_options() -> dict[str, Any]:
    caller = caller_of(auth.current_request, action=Action.MFA_CHECK)
    started = mfa.options(caller=caller)
    return {"challenge_id": started.challenge_id, "publicKey": started.public_key}


def _assertion(body: dict[str, Any]) -> Assertion:
    only_fields(body, {"challenge_id", "credential"})
    return mfa.parse_assertion(challenge_id=body.get("challenge_id"), credential=body.get("credential"))


@route(auth, "/auth/mfa/verify", methods=["POST"], refusals_counted_as="MfaRefusals")
def mfa_verify() -> dict[str, Any]:
    caller, assertion = caller_with(
        auth.current_request, action=Action.MFA_CHECK, parse=_assertion, reads=mfa.assertion_reads
    )
    passed = mfa.verify(caller=caller, assertion=assertion)
    return login_body(token=passed.token, session=caller.session, org=caller.org, member=caller.member)


@route(auth, "/auth/reauth/options", methods=["POST"])
def reauth_options() -> dict[str, Any]:
    started = stepup.options(caller=caller_of(auth.current_request, action=Action.STEP_UP))
    return {"challenge_id": started.challenge_id, "publicKey": started.public_key}


@route(auth, "/auth/reauth/verify", methods=["POST"], refusals_counted_as="StepUpRefusals")
def reauth_verify() -> dict[str, Any]:
    caller, assertion = caller_with(
        auth.current_request, action=Action.STEP_UP, parse=_assertion, reads=mfa.assertion_reads
    )
    checked_at = stepup.verify(caller=caller, assertion=assertion)
    return {"key_checked_at": clock.iso(checked_at), "reauth_until": clock.iso(assurance.window_ends(caller))}


@route(auth, "/auth/logout", methods=["POST"], status=204)
def logout() -> None:
    sessions.end(caller=caller_of(auth.current_request, action=Action.READ_ACCOUNT))


@route(auth, "/auth/backup-login", methods=["POST"], refusals_counted_as="BackupLoginRefusals")
def backup_login() -> dict[str, Any]:
    body = json_body(auth.current_request)
    only_fields(body, {"key_id", "secret"})
    signed_in = backup.sign_in(
        key_id=body.get("key_id"), secret=body.get("secret"), client=client_of(auth.current_request)
    )
    member = sessions.backup_member(signed_in.credential)
    return login_body(token=signed_in.issued.token, session=signed_in.issued.session, org=signed_in.org, member=member)
