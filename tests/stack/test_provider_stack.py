"""The OpenID provider over real HTTP against ``python -m devstack run``: Authlib, as the relying
party, discovers the provider, builds the authorization URL with PKCE, follows keyward's answer and
redeems the code; PyJWT verifies the ID token against the JWKS discovery names."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from urllib.parse import urlencode

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session

from chalicelib.provider.clients import secret_hash
from tests.support.stack_client import TABLE_PREFIX, StackClient, StackTables, unique_org

REDIRECT_URI = "https://app.example/callback"


def _register(db: StackTables, *, org: str, client_id: str, secret: str) -> None:
    db.client.put_item(
        TableName=f"{TABLE_PREFIX}relying-parties",
        Item={
            "client_id": {"S": client_id},
            "org_id": {"S": org},
            "name": {"S": "Expense reports"},
            "redirect_uris": {"L": [{"S": REDIRECT_URI}]},
            "flows": {"SS": ["code"]},
            "secret_hash": {"S": secret_hash(secret)},
            "signing_alg": {"S": "RS256"},
            "created_at": {"S": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")},
            "created_by": {"S": "alice"},
        },
    )


def test_authlib_signs_a_member_in_with_code_and_pkce(keyward: StackClient, db: StackTables) -> None:
    org = unique_org("oidc")
    token, key, _ = keyward.member_with_key(org=org, user="bob")
    client_id, secret = f"app-{secrets.token_hex(4)}", secrets.token_urlsafe(32)
    _register(db, org=org, client_id=client_id, secret=secret)

    rp = OAuth2Session(
        client_id=client_id,
        client_secret=secret,
        scope="openid",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )
    rp.trust_env = False
    metadata = rp.get(f"{keyward.api}/.well-known/openid-configuration", withhold_token=True).json()
    assert metadata["issuer"] == keyward.api
    verifier = secrets.token_urlsafe(48)
    url, state = rp.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier, nonce="n-1")
    page = requests.get(url, timeout=10, proxies={"http": "", "https": ""})
    assert page.status_code == 200
    request_id = re.search(r'data-request="([^"]+)"', page.text).group(1)

    options = keyward.call("POST", f"/oidc/authorize/{request_id}/options", token=token)
    assert options.status == 200, options
    credential = key.authenticate(options.body["publicKey"], origin=keyward.origin)
    answer = keyward.call(
        "POST",
        f"/oidc/authorize/{request_id}/verify",
        token=token,
        body={"challenge_id": options.body["challenge_id"], "credential": credential},
    )
    assert answer.status == 200 and answer.body["refusal"] is None, answer
    done = answer.body["done"]
    assert done["params"]["state"] == state

    issued = rp.fetch_token(
        metadata["token_endpoint"],
        authorization_response=f"{done['redirect_uri']}?{urlencode(done['params'])}",
        code_verifier=verifier,
    )
    jwks = jwt.PyJWKSet.from_dict(rp.get(metadata["jwks_uri"], withhold_token=True).json())
    kid = jwt.get_unverified_header(issued["id_token"])["kid"]
    claims = jwt.decode(
        issued["id_token"],
        key=next(found for found in jwks.keys if found.key_id == kid).key,
        algorithms=["RS256"],
        audience=client_id,
        issuer=metadata["issuer"],
    )
    assert (claims["sub"], claims["org"], claims["nonce"]) == ("bob", org, "n-1")
