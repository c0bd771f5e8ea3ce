"""A test client that speaks keyward's HTTP contract through Chalice's test client, with the
steps most tests share (login, key registration, the MFA login) as one call each."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from chalicelib.base import clock
from chalicelib.base.models import Organization, SecurityKey
from devstack.idp import DevIdentityProvider
from tests.support.authenticator import SoftwareAuthenticator

# Sent with every request, so tests can find it where keyward records where a request came from.
USER_AGENT = "keyward-tests"


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str | None:
        return self.body.get("Code") if isinstance(self.body, dict) else None


@dataclass
class Member:
    """A signed-in test user: their current token and their security keys."""

    org: str
    user: str
    token: str
    state: str
    authenticators: list[SoftwareAuthenticator] = field(default_factory=list)


class KeywardClient:
    def __init__(self, *, client: Any, idp: DevIdentityProvider) -> None:
        self.client = client
        self.idp = idp

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        raw: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = {"content-type": "application/json", "user-agent": USER_AGENT, **(headers or {})}
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
        response = self.client.http.request(method=method, path=path, headers=sent, body=payload)
        text = response.body.decode() if isinstance(response.body, bytes) else response.body
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Reply(status=response.status_code, body=parsed, headers=dict(response.headers))

    # --- the shared steps -------------------------------------------------------------------

    def login_reply(self, *, org: str = "acme", user: str = "bob", admin: bool = False, **claims: Any) -> Reply:
        token = self.idp.mint(
            org=org,
            user=user,
            admin=admin,
            name=claims.pop("name", user.title()),
            email=claims.pop("email", f"{user}@{org}.example"),
            **claims,
        )
        return self.call("POST", "/auth/login", body={"id_token": token})

    def login(self, *, org: str = "acme", user: str = "bob", admin: bool = False) -> Member:
        reply = self.login_reply(org=org, user=user, admin=admin)
        assert reply.status == 200, reply.body
        return Member(org=org, user=user, token=reply.body["token"], state=reply.body["state"])

    def registration_options(self, member: Member) -> Reply:
        return self.call("POST", "/me/mfa/keys/options", token=member.token)

    def add_key(
        self, member: Member, authenticator: SoftwareAuthenticator | None = None, *, name: str = "My key"
    ) -> Reply:
        """Run the whole registration ceremony; the authenticator joins the member's keys on success."""
        authenticator = authenticator or SoftwareAuthenticator()
        options = self.registration_options(member)
        assert options.status == 200, options.body
        credential = authenticator.register(options.body["publicKey"])
        reply = self.call(
            "POST",
            "/me/mfa/keys",
            token=member.token,
            body={"challenge_id": options.body["challenge_id"], "name": name, "credential": credential},
        )
        if reply.status == 201:
            member.authenticators.append(authenticator)
            # A session that had to register continues under a new token.
            if reply.body["token"] is not None:
                member.token = reply.body["token"]
            member.state = reply.body["session"]["state"]
        return reply

    def mfa_options(self, member: Member) -> Reply:
        return self.call("POST", "/auth/mfa/options", token=member.token)

    def mfa_verify(self, member: Member, challenge_id: str, credential: dict[str, Any]) -> Reply:
        return self.call(
            "POST",
            "/auth/mfa/verify",
            token=member.token,
            body={"challenge_id": challenge_id, "credential": credential},
        )

    def mfa_login(self, *, org: str, user: str, authenticator: SoftwareAuthenticator, admin: bool = False) -> Member:
        """Log in and pass the MFA step with ``authenticator``; returns the active member."""
        member = self.login(org=org, user=user, admin=admin)
        assert member.state == "mfa_required"
        options = self.mfa_options(member)
        assert options.status == 200, options.body
        reply = self.mfa_verify(
            member, options.body["challenge_id"], authenticator.authenticate(options.body["publicKey"])
        )
        assert reply.status == 200, reply.body
        member.token, member.state = reply.body["token"], reply.body["state"]
        member.authenticators.append(authenticator)
        return member


def enforce_in_table(org_id: str, *, enforcing_session_id: str | None = None) -> None:
    """Record an enforcement as PUT /org/mfa does, for tests about its effects on members."""
    org = Organization.get(org_id, consistent_read=True)
    actions = [
        Organization.mfa_enforced.set(True),
        Organization.enforced_at.set(clock.now()),
        Organization.enforced_by.set("test"),
        Organization.enforcement_generation.set(org.enforcement_generation + 1),
    ]
    if enforcing_session_id:
        actions.append(Organization.enforcing_session_id.set(enforcing_session_id))
    org.update(actions=actions)


def hold_keys_in_table(member: Member, *, count: int) -> str:
    """Make a member hold ``count`` keys as far as their member item says (no key items), and
    make the session's proof one of them, just now: a session of a member with that many keys
    that has just passed a security-key check. Returns the proven key's ID."""
    from chalicelib.base.models import Member as StoredMember
    from chalicelib.base.models import Session

    listed = {
        f"held{number:018d}": {
            "id": base64.urlsafe_b64encode(bytes([number]) * 16).decode().rstrip("="),
            "transports": [],
        }
        for number in range(count)
    }
    StoredMember(member.org, member.user).update(
        actions=[StoredMember.key_count.set(count), StoredMember.credentials.set(listed)]
    )
    proven = min(listed)
    Session(member.token.split(".")[3]).update(
        actions=[Session.verified_key_id.set(proven), Session.key_checked_at.set(clock.now())]
    )
    return proven


def store_key(org_id: str, user_id: str, key_id: str, *, attested: bool = False) -> None:
    """A security key item as a registration stores it, without the ceremony, for tests that need
    many keys; the member's key count is the test's to set."""
    SecurityKey(
        org_id,
        key_id,
        user_id=user_id,
        name=key_id,
        credential_id=key_id.encode(),
        public_key=b"k",
        algorithm=-7,
        aaguid="00000000-0000-0000-0000-000000000000",
        attestation_format="none",
        created_at=clock.now(),
        attested=attested,
    ).save()
