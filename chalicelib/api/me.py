"""Personal settings → Multi-factor authentication: the caller's own security keys."""
from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib import authenticator_policy, clock, keys, sessions
from chalicelib.api import views
from chalicelib.api.http import ANY_STATE, caller_of, json_body, only_fields, route
from chalicelib.api.views import org_body, user_body
from chalicelib.sessions import SessionState

me = Blueprint(__name__)

# A member made to register a key at login may do exactly that.
_REGISTRATION_STATES = (SessionState.ACTIVE, SessionState.REGISTRATION_REQUIRED)


@route(me, "/me", methods=["GET"])
def who_am_i() -> dict[str, Any]:
    caller = caller_of(me.current_request, allowed=ANY_STATE)
    return {
        "user": user_body(caller.member),
        "org": org_body(caller.org),
        "session": {
            "state": caller.session.state,
            "created_at": clock.iso(caller.session.created_at),
            "expires_at": clock.iso(caller.session.expires_at),
        },
        "mfa": {"enabled": caller.member.key_count > 0, "key_count": caller.member.key_count},
    }


@route(me, "/me/mfa/keys", methods=["GET"])
def list_keys() -> dict[str, Any]:
    caller = caller_of(me.current_request)
    policy = authenticator_policy.of(caller.org)
    return {"keys": [keys.describe(key, policy=policy) for key in keys.list_keys(caller=caller)]}


@route(me, "/me/mfa/keys/options", methods=["POST"])
def registration_options() -> dict[str, Any]:
    caller = caller_of(me.current_request, allowed=_REGISTRATION_STATES)
    started = keys.registration_options(caller=caller)
    return {"challenge_id": started.challenge_id, "publicKey": started.public_key}


@route(me, "/me/mfa/keys", methods=["POST"], status=201)
def register_key() -> dict[str, Any]:
    caller = caller_of(me.current_request, allowed=_REGISTRATION_STATES)
    body = json_body(me.current_request)
    only_fields(body, {"challenge_id", "name", "credential"})
    key = keys.register(caller=caller, challenge_id=body.get("challenge_id"), name=body.get("name"), credential=body.get("credential"))
    return {"key": keys.describe(key, policy=authenticator_policy.of(caller.org)), "session": {"state": caller.session.state}}


@route(me, "/me/mfa/keys/{key_id}", methods=["PATCH"])
def rename_key(key_id: str) -> dict[str, Any]:
    caller = caller_of(me.current_request)
    body = json_body(me.current_request)
    only_fields(body, {"name"})
    renamed = keys.rename(caller=caller, key_id=key_id, name=body.get("name"))
    return {"key": keys.describe(renamed, policy=authenticator_policy.of(caller.org))}


@route(me, "/me/mfa/keys/{key_id}", methods=["DELETE"], status=204)
def delete_key(key_id: str) -> None:
    keys.delete(caller=caller_of(me.current_request), key_id=key_id)


@route(me, "/me/mfa", methods=["DELETE"], status=204)
def disable_mfa() -> None:
    keys.disable_mfa(caller=caller_of(me.current_request))


@route(me, "/me/sessions", methods=["GET"])
def list_sessions() -> dict[str, Any]:
    caller = caller_of(me.current_request)
    found = sessions.sessions_of(org_id=caller.session.org_id, user_id=caller.session.user_id)
    return {"sessions": [views.session_body(session, current=caller.session.session_id) for session in found]}


@route(me, "/me/sessions/{session_id}", methods=["DELETE"], status=204)
def end_session(session_id: str) -> None:
    sessions.end_own_session(caller=caller_of(me.current_request), session_id=session_id)
