"""Personal settings → Multi-factor authentication: the caller's own security keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint

from chalicelib.access.actions import Action
from chalicelib.api import views
from chalicelib.api.http import caller_of, caller_with, json_body, only_fields, route
from chalicelib.api.views import org_body, user_body
from chalicelib.base import clock
from chalicelib.base.deferred import deferred

if TYPE_CHECKING:
    from chalicelib.keys.registration import KeySubmission

# Loaded by the first request about security keys, not by every cold start.
if TYPE_CHECKING:
    from chalicelib.access import grace, sessions
    from chalicelib.ceremony import authenticator_policy
    from chalicelib.keys import enrollment_passes, management, registration
else:
    authenticator_policy = deferred("chalicelib.ceremony.authenticator_policy")
    enrollment_passes = deferred("chalicelib.keys.enrollment_passes")
    grace = deferred("chalicelib.access.grace")
    management = deferred("chalicelib.keys.management")
    registration = deferred("chalicelib.keys.registration")
    sessions = deferred("chalicelib.access.sessions")

me = Blueprint(__name__)


@route(me, "/me", methods=["GET"])
def who_am_i() -> dict[str, Any]:
    caller = caller_of(me.current_request, action=Action.READ_ACCOUNT)
    return {
        "user": user_body(caller.member),
        "org": org_body(caller.org),
        "session": {
            "state": caller.session.state,
            "created_at": clock.iso(caller.session.created_at),
            "expires_at": clock.iso(caller.session.expires_at),
        },
        "mfa": {
            "enabled": caller.member.key_count > 0,
            "key_count": caller.member.key_count,
            "registration_due_at": clock.iso(grace.member_due_at(org=caller.org, member=caller.member)),
            # Known before the registration starts, so that the console asks for the code up front.
            "enrollment_code_required": enrollment_passes.code_required(caller=caller),
        },
        "key_policy": {
            # What a key registered now must be, and, where the organization's policy stopped
            # counting the member's keys, which of them and why.
            "accepted": authenticator_policy.describe_accepted(authenticator_policy.of(caller.org)),
            "keys_to_replace": management.keys_to_replace(caller=caller),
            # Keys that fall short but count until the grace period of the policy's change ends.
            "keys_spared": management.keys_spared(caller=caller),
        },
    }


@route(me, "/me/mfa/keys", methods=["GET"])
def list_keys() -> dict[str, Any]:
    caller = caller_of(me.current_request, action=Action.READ)
    policy = authenticator_policy.of(caller.org)
    return {
        "keys": [
            management.describe(key, policy=policy) for key in management.as_shown(management.list_keys(caller=caller))
        ],
        # What a key registered now must be: a member whose keys stopped counting learns what to get.
        "accepted": authenticator_policy.describe_accepted(policy),
    }


@route(me, "/me/mfa/keys/options", methods=["POST"])
def registration_options() -> dict[str, Any]:
    caller = caller_of(me.current_request, action=Action.REGISTER_KEY)
    started = registration.registration_options(caller=caller)
    return {
        "challenge_id": started.challenge_id,
        "publicKey": started.public_key,
        "enrollment_code_required": enrollment_passes.code_required(caller=caller),
    }


def _key_submission(body: dict[str, Any]) -> KeySubmission:
    only_fields(body, {"challenge_id", "name", "credential", "enrollment_code"})
    return registration.parse_submission(
        challenge_id=body.get("challenge_id"),
        name=body.get("name"),
        credential=body.get("credential"),
        enrollment_code=body.get("enrollment_code"),
    )


@route(me, "/me/mfa/keys", methods=["POST"], status=201)
def register_key() -> dict[str, Any]:
    caller, submission = caller_with(
        me.current_request, action=Action.REGISTER_KEY, parse=_key_submission, reads=registration.submission_reads
    )
    registered = registration.register(caller=caller, submission=submission)
    # A session that had to register continues under a new token; the old one stops working.
    return {
        "key": management.describe(registered.key, policy=authenticator_policy.of(caller.org)),
        "session": {"state": caller.session.state},
        "token": registered.token,
    }


@route(me, "/me/mfa/keys/{key_id}", methods=["PATCH"])
def rename_key(key_id: str) -> dict[str, Any]:
    caller = caller_of(me.current_request, action=Action.RENAME_KEY)
    body = json_body(me.current_request)
    only_fields(body, {"name"})
    renamed = management.rename(caller=caller, key_id=key_id, name=body.get("name"))
    return {"key": management.describe(renamed, policy=authenticator_policy.of(caller.org))}


@route(me, "/me/mfa/keys/{key_id}", methods=["DELETE"], status=204)
def delete_key(key_id: str) -> None:
    caller = caller_of(me.current_request, action=Action.DELETE_KEY)
    management.delete(caller=caller, key_id=key_id)


@route(me, "/me/mfa", methods=["DELETE"], status=204)
def disable_mfa() -> None:
    caller = caller_of(me.current_request, action=Action.DISABLE_MFA)
    management.disable_mfa(caller=caller)


@route(me, "/me/sessions", methods=["GET"])
def list_sessions() -> dict[str, Any]:
    caller = caller_of(me.current_request, action=Action.READ)
    return {
        "sessions": [
            views.session_body(session, current=caller.session.session_id)
            for session in sessions.open_sessions_of(caller)
        ]
    }


@route(me, "/me/sessions", methods=["DELETE"], status=204)
def end_other_sessions() -> None:
    sessions.end_other_sessions(caller=caller_of(me.current_request, action=Action.END_SESSION))


@route(me, "/me/sessions/{session_id}", methods=["DELETE"], status=204)
def end_session(session_id: str) -> None:
    sessions.end_own_session(caller=caller_of(me.current_request, action=Action.END_SESSION), session_id=session_id)
