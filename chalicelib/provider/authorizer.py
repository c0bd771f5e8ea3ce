"""The Lambda authorizer (REQUEST type) an organization attaches to its own API Gateway routes:
a request passes while the bearer token it carries stands, as :mod:`chalicelib.provider.introspection`
judges it (a keyward session token, or an access token the provider issued).

API Gateway calls it with one of two payloads and expects the answer in the same format:

- **REST APIs (and WebSocket APIs), payload 1.0**: an IAM policy. An allowed request gets
  ``Allow`` for the whole stage (``<api>/<stage>/*/*``), not only the route it asked for: API
  Gateway caches the answer per token for the authorizer's TTL and applies the cached policy to
  every route of the stage, so a policy naming one method ARN would deny the holder every other
  route until the cache expired. A token that does not stand raises exactly ``Unauthorized``,
  which API Gateway turns into a 401; a session that stands without the security-key check this
  authorizer requires gets ``Deny`` (a 403: who it is is known, but not enough).
- **HTTP APIs, payload 2.0 with simple responses**: ``{"isAuthorized": ..., "context": ...}``;
  API Gateway answers 403 to anything not authorized.

The context the backend receives (``$context.authorizer.<name>``, or ``event.requestContext.authorizer``
— under ``lambda`` for HTTP APIs) holds only strings, numbers and booleans, as API Gateway requires:
``org``, ``user``, ``admin``, ``mfa`` and, once the session proved a key, ``key_checked_at`` (epoch
seconds). Session ends and enforcement reach the API within the authorizer's cache TTL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.base.config import settings
from chalicelib.provider import introspection

# The message API Gateway turns into a 401 (any other failure of the function is a 500).
UNAUTHORIZED = "Unauthorized"
_PAYLOAD_2 = "2.0"
_ARN_PARTS = 6


class Unauthorized(Exception):
    """No token, or one that does not stand: API Gateway answers 401."""

    def __init__(self) -> None:
        super().__init__(UNAUTHORIZED)


def authorize(event: Mapping[str, Any]) -> dict[str, Any]:
    """API Gateway's answer to one REQUEST authorizer event, of either payload format.

    Raises:
        Unauthorized: (payload 1.0) the request carries no token that stands.
        pynamodb.exceptions.PynamoDBException: DynamoDB failed; API Gateway answers 500, never an Allow.
    """
    token = bearer_token(event.get("headers"))
    active = introspection.judge(token) if token is not None else None
    allowed = active is not None and (active.mfa or not settings().authorizer_require_mfa)
    if event.get("version") == _PAYLOAD_2:
        if active is None or not allowed:
            return {"isAuthorized": False}
        return {"isAuthorized": True, "context": context_of(active)}
    if active is None:
        raise Unauthorized()
    answer: dict[str, Any] = {
        "principalId": active.user_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow" if allowed else "Deny",
                    "Resource": stage_wildcard(event.get("methodArn")),
                }
            ],
        },
    }
    if allowed:
        answer["context"] = context_of(active)
    return answer


def bearer_token(headers: object) -> str | None:
    """The token of the request's ``Authorization: Bearer`` header. REST APIs pass headers as the
    client spelled them, HTTP APIs in lower case."""
    if not isinstance(headers, Mapping):
        return None
    value = next((value for name, value in headers.items() if str(name).lower() == "authorization"), None)
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def context_of(active: introspection.ActiveToken) -> dict[str, str | int | bool]:
    """What the backend learns of the caller; API Gateway takes strings, numbers and booleans only."""
    context: dict[str, str | int | bool] = {
        "org": active.org_id,
        "user": active.user_id,
        "admin": active.admin,
        "mfa": active.mfa,
    }
    if active.key_checked_at is not None:
        context["key_checked_at"] = active.key_checked_at
    return context


def stage_wildcard(method_arn: object) -> str:
    """Every route of the stage the request came to: ``arn:…:execute-api:<region>:<account>:<api>/<stage>/*/*``.

    Raises:
        Unauthorized: the event names no method ARN of API Gateway's shape (no policy can be written).
    """
    if not isinstance(method_arn, str):
        raise Unauthorized()
    parts = method_arn.split(":", _ARN_PARTS - 1)
    path = parts[-1].split("/")
    if len(parts) != _ARN_PARTS or parts[2] != "execute-api" or len(path) < 2 or not all(path[:2]):
        raise Unauthorized()
    return ":".join(parts[:-1]) + f":{path[0]}/{path[1]}/*/*"
