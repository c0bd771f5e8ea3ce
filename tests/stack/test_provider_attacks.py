"""Attacks on the OpenID provider over real HTTP against ``python -m devstack run``, with Authlib as
the relying party: codes injected into another client, redeemed at another redirect URI or twice at
once, an attacker's session carrying a victim's hint, a session ended between authorization and
redemption, open redirects, state and nonce, and a relying party deleted mid-flow. Each asserts
what the attacker gets (status, OAuth error) and what is stored (codes, requests, audit)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session

from chalicelib.provider.clients import secret_hash
from tests.support.authenticator import SoftwareAuthenticator
from tests.support.stack_client import TABLE_PREFIX, StackClient, StackTables, unique_org

REDIRECT_URI = "https://app.example/callback"
OTHER_REDIRECT_URI = "https://app.example/other-callback"
ENTRA_REDIRECT_URI = "https://login.microsoftonline.com/common/federation/externalauthprovider"
NO_PROXY = {"http": "", "https": ""}


def _register(
    db: StackTables,
    *,
    org: str,
    client_id: str | None = None,
    redirect_uris: tuple[str, ...] = (REDIRECT_URI,),
    flows: tuple[str, ...] = ("code",),
    confidential: bool = True,
) -> tuple[str, str | None]:
    client_id = client_id or f"app-{secrets.token_hex(4)}"
    secret = secrets.token_urlsafe(32) if confidential else None
    item: dict[str, Any] = {
        "client_id": {"S": client_id},
        "org_id": {"S": org},
        "name": {"S": "Expense reports"},
        "redirect_uris": {"L": [{"S": uri} for uri in redirect_uris]},
        "flows": {"SS": list(flows)},
        "signing_alg": {"S": "RS256"},
        "created_at": {"S": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")},
        "created_by": {"S": "alice"},
    }
    if secret is not None:
        item["secret_hash"] = {"S": secret_hash(secret)}
    db.client.put_item(TableName=f"{TABLE_PREFIX}relying-parties", Item=item)
    return client_id, secret


def _rp(client_id: str, secret: str | None, redirect_uri: str = REDIRECT_URI) -> OAuth2Session:
    session = OAuth2Session(
        client_id=client_id,
        client_secret=secret,
        scope="openid",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
    )
    session.trust_env = False
    return session


def _page(url: str) -> requests.Response:
    return requests.get(url, timeout=10, proxies=NO_PROXY, allow_redirects=False)


def _request_id(page: requests.Response) -> str:
    assert page.status_code == 200, page.text
    found = re.search(r'data-request="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def _key_check(keyward: StackClient, token: str, key: SoftwareAuthenticator, request_id: str) -> dict[str, Any]:
    options = keyward.call("POST", f"/oidc/authorize/{request_id}/options", token=token)
    assert options.status == 200 and "challenge_id" in options.body, options
    answer = keyward.call(
        "POST",
        f"/oidc/authorize/{request_id}/verify",
        token=token,
        body={
            "challenge_id": options.body["challenge_id"],
            "credential": key.authenticate(options.body["publicKey"], origin=keyward.origin),
        },
    )
    assert answer.status == 200, answer
    return dict(answer.body)


def _authorized(
    keyward: StackClient,
    rp: OAuth2Session,
    token: str,
    key: SoftwareAuthenticator,
    **params: Any,
) -> tuple[dict[str, Any], str, str]:
    """An authorization request answered after the member's key check: the answer's parameters,
    the PKCE verifier and the state."""
    verifier = secrets.token_urlsafe(48)
    url, state = rp.create_authorization_url(f"{keyward.api}/oidc/authorize", code_verifier=verifier, **params)
    answer = _key_check(keyward, token, key, _request_id(_page(url)))
    assert answer["refusal"] is None, answer
    return answer["done"], verifier, state


def _redeem(
    keyward: StackClient,
    client_id: str,
    secret: str | None,
    *,
    code: str,
    verifier: str,
    redirect_uri: str = REDIRECT_URI,
) -> requests.Response:
    headers = {"content-type": "application/x-www-form-urlencoded", "connection": "close"}
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": redirect_uri}
    if secret is not None:
        headers["authorization"] = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    else:
        form["client_id"] = client_id
    return requests.post(
        f"{keyward.api}/oidc/token", data=urlencode(form), headers=headers, timeout=10, proxies=NO_PROXY
    )


def _code_item(db: StackTables, code: str) -> dict[str, Any] | None:
    return db.get("authorizations", authorization_id=f"code#{hashlib.sha256(code.encode()).hexdigest()}")


def _oidc_audit(db: StackTables, org: str) -> list[tuple[str, str | None]]:
    return [
        (event["action"], event["details"].get("reason"))
        for event in db.audit(org)
        if event["action"].startswith("oidc.")
    ]


def _requests_of(db: StackTables, client_id: str) -> list[dict[str, Any]]:
    found = db.client.scan(
        TableName=db.table("authorizations"),
        FilterExpression="client_id = :c",
        ExpressionAttributeValues={":c": {"S": client_id}},
        ConsistentRead=True,
    )["Items"]
    return [item for item in found if item["authorization_id"]["S"].startswith("request#")]


# --- (a) a code injected into another client ----------------------------------------------------


def test_a_code_issued_to_one_client_is_worthless_to_another_organizations_client(
    keyward: StackClient, db: StackTables
) -> None:
    victim_org, attacker_org = unique_org("victim"), unique_org("attacker")
    token, key, _ = keyward.member_with_key(org=victim_org, user="bob")
    client_a, secret_a = _register(db, org=victim_org)
    client_b, secret_b = _register(db, org=attacker_org)
    done, verifier, _ = _authorized(keyward, _rp(client_a, secret_a), token, key)
    code = done["params"]["code"]

    stolen = _redeem(keyward, client_b, secret_b, code=code, verifier=verifier)

    assert (stolen.status_code, stolen.json()["error"]) == (400, "invalid_grant")
    assert "access_token" not in stolen.text and "id_token" not in stolen.json()
    item = _code_item(db, code)
    assert item is not None and "used_at" not in item and item["client_id"]["S"] == client_a
    assert ("oidc.refused", "code_of_another_client") in _oidc_audit(db, victim_org)
    # The rightful client still redeems it.
    assert _redeem(keyward, client_a, secret_a, code=code, verifier=verifier).status_code == 200


# --- (b) the right verifier at another redirect URI ---------------------------------------------


def test_a_code_redeemed_at_another_registered_redirect_uri_is_refused(keyward: StackClient, db: StackTables) -> None:
    org = unique_org("redirect")
    token, key, _ = keyward.member_with_key(org=org, user="bob")
    client_id, secret = _register(db, org=org, redirect_uris=(REDIRECT_URI, OTHER_REDIRECT_URI))
    done, verifier, _ = _authorized(keyward, _rp(client_id, secret), token, key)
    code = done["params"]["code"]

    moved = _redeem(keyward, client_id, secret, code=code, verifier=verifier, redirect_uri=OTHER_REDIRECT_URI)
    assert (moved.status_code, moved.json()["error"]) == (400, "invalid_grant")
    item = _code_item(db, code)
    assert item is not None and "used_at" not in item
    assert ("oidc.refused", "redirect_uri_mismatch") in _oidc_audit(db, org)
    assert [action for action, _ in _oidc_audit(db, org)].count("oidc.token_issued") == 0


# --- (c) one code, redeemed concurrently --------------------------------------------------------


def test_of_concurrent_redemptions_of_one_code_exactly_one_gets_tokens(keyward: StackClient, db: StackTables) -> None:
    org = unique_org("race")
    token, key, _ = keyward.member_with_key(org=org, user="bob")
    client_id, secret = _register(db, org=org)
    done, verifier, _ = _authorized(keyward, _rp(client_id, secret), token, key)
    code = done["params"]["code"]
    racers = 4
    barrier = threading.Barrier(racers)

    def redeem() -> requests.Response:
        barrier.wait(timeout=30)
        return _redeem(keyward, client_id, secret, code=code, verifier=verifier)

    with ThreadPoolExecutor(max_workers=racers) as pool:
        answers = [future.result(timeout=60) for future in [pool.submit(redeem) for _ in range(racers)]]

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] + [400] * (racers - 1), [answer.text for answer in answers]
    assert {answer.json()["error"] for answer in answers if answer.status_code == 400} == {"invalid_grant"}
    item = _code_item(db, code)
    assert item is not None and "used_at" in item
    audit = _oidc_audit(db, org)
    assert audit.count(("oidc.token_issued", None)) == 1
    assert audit.count(("oidc.refused", "code_reused")) == racers - 1


# --- (d) a victim's hint with the attacker's own session -----------------------------------------


def test_an_attackers_session_with_a_victims_entra_hint_is_refused_and_nothing_is_issued(
    keyward: StackClient, db: StackTables
) -> None:
    org = unique_org("entra")
    keyward.member_with_key(org=org, user="bob")
    mallory, _, _ = keyward.member_with_key(org=org, user="mallory")
    # The victim's hint as Entra issues it: already expired, within the grace keyward allows.
    hint = keyward.idp.mint(org=org, user="bob", lifetime_seconds=-60, tid="tenant-1")
    audience = jwt.decode(hint, options={"verify_signature": False})["aud"]
    entra_id = audience if isinstance(audience, str) else audience[0]
    existing = db.get("relying-parties", client_id=entra_id)
    if existing is None:
        _register(
            db,
            org=org,
            client_id=entra_id,
            redirect_uris=(ENTRA_REDIRECT_URI,),
            flows=("id_token",),
            confidential=False,
        )
    else:  # another test of this module registered the stage's Entra client for its own organization
        db.client.update_item(
            TableName=db.table("relying-parties"),
            Key={"client_id": {"S": entra_id}},
            UpdateExpression="SET org_id = :o",
            ExpressionAttributeValues={":o": {"S": org}},
        )
    form = {
        "client_id": entra_id,
        "redirect_uri": ENTRA_REDIRECT_URI,
        "response_type": "id_token",
        "response_mode": "form_post",
        "scope": "openid",
        "nonce": "n-victim",
        "state": "s-victim",
        "id_token_hint": hint,
    }
    page = requests.post(
        f"{keyward.api}/oidc/authorize", data=form, timeout=10, proxies=NO_PROXY, allow_redirects=False
    )
    request_id = _request_id(page)

    answer = keyward.call("POST", f"/oidc/authorize/{request_id}/options", token=mallory)
    assert answer.status == 200, answer
    assert answer.body["refusal"]["Code"] == "HintMismatch"
    assert answer.body["done"]["params"]["error"] == "access_denied"
    assert "id_token" not in answer.body["done"]["params"]
    request = db.get("authorizations", authorization_id=f"request#{request_id}")
    assert request is not None and "used_at" in request
    assert _oidc_audit(db, org) == [("oidc.refused", "HintMismatch")]
    # The request is spent: the attacker cannot try again with it.
    again = keyward.call("POST", f"/oidc/authorize/{request_id}/options", token=mallory)
    assert again.status == 404


# --- (e) a session ended between authorization and redemption -----------------------------------


def test_a_session_ended_by_an_admins_enforcement_between_authorize_and_token_gets_nothing(
    keyward: StackClient, db: StackTables
) -> None:
    org = unique_org("enforce")
    admin = keyward.token(org=org, user="alice", admin=True)
    keyward.add_key(admin, name="Admin key")
    token, key, _ = keyward.member_with_key(org=org, user="bob")
    client_id, secret = _register(db, org=org)
    done, verifier, _ = _authorized(keyward, _rp(client_id, secret), token, key)
    code = done["params"]["code"]

    keyward.enforce(admin)

    refused = _redeem(keyward, client_id, secret, code=code, verifier=verifier)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    item = _code_item(db, code)
    assert item is not None and "used_at" not in item
    assert ("oidc.refused", "session_ended") in _oidc_audit(db, org)
    assert ("oidc.token_issued", None) not in _oidc_audit(db, org)


# --- (f) open redirects --------------------------------------------------------------------------


def test_no_redirect_uri_but_the_registered_one_is_ever_redirected_to(keyward: StackClient, db: StackTables) -> None:
    org = unique_org("redirects")
    client_id, secret = _register(db, org=org)
    for attempt in (
        f"{REDIRECT_URI}?next=https://evil.example",
        f"{REDIRECT_URI}/../../evil",
        f"{REDIRECT_URI}x",
        "http://app.example/callback",
        "https://app.example:8443/callback",
        "https://app.example.evil.example/callback",
        "https://APP.example/callback",
        "https://evil.example/callback",
    ):
        rp = _rp(client_id, secret, redirect_uri=attempt)
        url, _ = rp.create_authorization_url(f"{keyward.api}/oidc/authorize", code_verifier=secrets.token_urlsafe(48))
        page = _page(url)
        assert page.status_code == 400, (attempt, page.status_code)
        assert "Location" not in page.headers, attempt
        assert "InvalidRedirectUri" in page.text
        assert "evil" not in page.text
        # Not even an unvalidated request refused with PKCE missing is sent there.
        rp.code_challenge_method = None
        url, _ = rp.create_authorization_url(f"{keyward.api}/oidc/authorize")
        assert "Location" not in _page(url).headers, attempt
    assert _requests_of(db, client_id) == []


# --- (g) state and nonce -------------------------------------------------------------------------


def test_state_and_nonce_come_back_exactly_and_each_id_token_carries_its_own_requests_nonce(
    keyward: StackClient, db: StackTables
) -> None:
    org = unique_org("state")
    token, key, _ = keyward.member_with_key(org=org, user="bob")
    client_id, secret = _register(db, org=org)
    rp = _rp(client_id, secret)
    state = "a b+c/=&%20é?#" + secrets.token_urlsafe(8)
    nonce = "n&=+ " + secrets.token_urlsafe(8)

    def signed_in(nonce: str) -> tuple[dict[str, Any], dict[str, Any]]:
        done, verifier, sent_state = _authorized(keyward, rp, token, key, state=state, nonce=nonce)
        assert sent_state == state
        location = f"{done['redirect_uri']}?{urlencode(done['params'])}"
        assert parse_qs(urlsplit(location).query)["state"] == [state]
        assert done["params"]["iss"] == keyward.api
        issued = _redeem(keyward, client_id, secret, code=done["params"]["code"], verifier=verifier)
        assert issued.status_code == 200, issued.text
        return done, jwt.decode(issued.json()["id_token"], options={"verify_signature": False})

    first, first_claims = signed_in(nonce)
    # The same nonce sent again (a replayed request): keyward answers it as a new request, and the
    # relying party, which keeps its nonces, sees the replay in the ID token's nonce.
    second, second_claims = signed_in(nonce)
    third, third_claims = signed_in("other-nonce")
    assert first_claims["nonce"] == second_claims["nonce"] == nonce
    assert third_claims["nonce"] == "other-nonce"
    assert len({first["params"]["code"], second["params"]["code"], third["params"]["code"]}) == 3


# --- (h) a relying party deleted mid-flow --------------------------------------------------------


def test_a_relying_party_deleted_mid_flow_gets_no_code_and_its_code_no_tokens(
    keyward: StackClient, db: StackTables
) -> None:
    org = unique_org("deleted")
    token, key, _ = keyward.member_with_key(org=org, user="bob")
    client_id, secret = _register(db, org=org)
    rp = _rp(client_id, secret)
    url, _ = rp.create_authorization_url(f"{keyward.api}/oidc/authorize", code_verifier=secrets.token_urlsafe(48))
    request_id = _request_id(_page(url))
    done, verifier, _ = _authorized(keyward, rp, token, key)

    db.client.delete_item(TableName=db.table("relying-parties"), Key={"client_id": {"S": client_id}})

    answer = keyward.call("POST", f"/oidc/authorize/{request_id}/options", token=token)
    assert (answer.status, answer.code) == (404, "UnknownClient")
    request = db.get("authorizations", authorization_id=f"request#{request_id}")
    assert request is not None and "used_at" not in request
    redeemed = _redeem(keyward, client_id, secret, code=done["params"]["code"], verifier=verifier)
    assert (redeemed.status_code, redeemed.json()["error"]) == (401, "invalid_client")
    assert redeemed.headers["WWW-Authenticate"].startswith("Basic")
    assert ("oidc.token_issued", None) not in _oidc_audit(db, org)
    assert json.dumps(db.audit(org)).count(done["params"]["code"]) == 0
