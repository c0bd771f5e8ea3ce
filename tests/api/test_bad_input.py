"""Bad input is refused with a 4xx and a stable ``Code``, never a 5xx, and changes nothing.

Covers every endpoint that reads a body (POST /auth/login, POST /auth/mfa/verify,
POST /me/mfa/keys, PATCH /me/mfa/keys/{id}) and, where bad input can reach them, the body-less
ones (a garbled bearer token, a garbled key ID in the path). "Changes nothing" means: no session,
member, key or credential claim is stored, the member's key_count is unchanged, a session in
``mfa_required`` stays there, and the challenge is not used up — the same challenge_id still
completes a valid ceremony afterwards.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest

from chalicelib.base.models import (
    AuditEvent,
    Challenge,
    CredentialClaim,
    Member,
    Organization,
    SecurityKey,
    Session,
    Throttle,
)
from tests.support.authenticator import SoftwareAuthenticator, b64url, b64url_decode
from tests.support.key_use import stored_keys
from tests.support.keyward_client import KeywardClient, Reply
from tests.support.keyward_client import Member as SignedIn

MAX_BODY = 64 * 1024
MISSING = object()  # a field left out of the body


def assert_refused(reply: Reply, status: int, code: str) -> None:
    """A refusal as the contract says: this status, ``{"Code", "Message"}``, no internals."""
    assert reply.status == status, (reply.status, reply.body)
    assert isinstance(reply.body, dict), reply.body
    assert reply.body.get("Code") == code, reply.body
    assert isinstance(reply.body.get("Message"), str) and reply.body["Message"], reply.body
    text = json.dumps(reply.body)
    assert "Traceback" not in text and 'File "' not in text, text


def _ids(values: list[Any]) -> list[str]:
    return ["missing" if value is MISSING else repr(value)[:20] for value in values]


# --- the valid requests each test garbles, and "changes nothing" ---------------------------------


@dataclass
class Ceremony:
    """A signed-in member, a fresh challenge and the valid credential that answers it."""

    api: KeywardClient
    kind: str  # "registration" or "verification"
    member: SignedIn
    options: dict[str, Any]
    challenge_id: str
    credential: dict[str, Any]

    @property
    def path(self) -> str:
        return "/me/mfa/keys" if self.kind == "registration" else "/auth/mfa/verify"

    def body(self, **fields: Any) -> dict[str, Any]:
        body = {"challenge_id": self.challenge_id, "credential": copy.deepcopy(self.credential)}
        if self.kind == "registration":
            body["name"] = "Good key"
        body.update(fields)
        return {name: value for name, value in body.items() if value is not MISSING}

    def send(self, body: Any) -> Reply:
        return self.api.call("POST", self.path, token=self.member.token, body=body)

    def answer(self, authenticator: SoftwareAuthenticator) -> dict[str, Any]:
        """Another authenticator's answer to the same options."""
        if self.kind == "registration":
            return authenticator.register(self.options)
        return authenticator.authenticate({**self.options, "allowCredentials": []})

    def assert_untouched(self) -> None:
        """Nothing was stored or used up: the valid credential still succeeds with the same challenge."""
        if self.kind == "registration":
            assert list(SecurityKey.scan()) == [] and list(CredentialClaim.scan()) == []
            assert Member.get("acme", "bob").key_count == 0
            reply = self.send(self.body())
            assert reply.status == 201, reply.body
            assert Member.get("acme", "bob").key_count == 1
            return
        me = self.api.call("GET", "/me", token=self.member.token)
        assert me.status == 200 and me.body["session"]["state"] == "mfa_required", me.body
        (key,) = stored_keys()
        assert key.sign_count == 0 and key.last_used_at is None
        assert Member.get("acme", "bob").key_count == 1
        reply = self.send(self.body())
        assert reply.status == 200 and reply.body["state"] == "active", reply.body


@pytest.fixture
def registration(api: KeywardClient) -> Ceremony:
    bob = api.login()
    options = api.registration_options(bob)
    assert options.status == 200, options.body
    credential = SoftwareAuthenticator().register(options.body["publicKey"])
    return Ceremony(api, "registration", bob, options.body["publicKey"], options.body["challenge_id"], credential)


@pytest.fixture
def verification(api: KeywardClient) -> Ceremony:
    authenticator = SoftwareAuthenticator()
    assert api.add_key(api.login(), authenticator, name="Yubi").status == 201
    bob = api.login()
    assert bob.state == "mfa_required"
    options = api.mfa_options(bob)
    assert options.status == 200, options.body
    credential = authenticator.authenticate(options.body["publicKey"])
    return Ceremony(api, "verification", bob, options.body["publicKey"], options.body["challenge_id"], credential)


@pytest.fixture(params=["registration", "verification"])
def ceremony(request: pytest.FixtureRequest) -> Ceremony:
    return request.getfixturevalue(request.param)


@pytest.fixture
def renaming(api: KeywardClient) -> tuple[SignedIn, str]:
    bob = api.login()
    reply = api.add_key(bob, name="Original")
    assert reply.status == 201, reply.body
    return bob, reply.body["key"]["id"]


def assert_no_login() -> None:
    assert list(Session.scan()) == [] and list(Member.scan()) == [] and list(Organization.scan()) == []


def assert_rename_untouched(key_id: str) -> None:
    (key,) = SecurityKey.scan()
    assert (key.key_id, key.name) == (key_id, "Original")


@dataclass
class Target:
    """One body-reading endpoint, ready to be sent garbage, and how to check nothing changed."""

    method: str
    path: str
    token: str | None
    valid_body: dict[str, Any]
    untouched: Callable[[], None]


@pytest.fixture(params=["login", "verify", "register", "rename"])
def target(request: pytest.FixtureRequest, api: KeywardClient) -> Target:
    if request.param == "login":
        id_token = api.idp.mint(org="acme", user="bob", name="Bob", email="bob@acme.example")
        return Target("POST", "/auth/login", None, {"id_token": id_token}, assert_no_login)
    if request.param == "rename":
        bob, key_id = request.getfixturevalue("renaming")
        return Target(
            "PATCH", f"/me/mfa/keys/{key_id}", bob.token, {"name": "Renamed"}, lambda: assert_rename_untouched(key_id)
        )
    ceremony: Ceremony = request.getfixturevalue("verification" if request.param == "verify" else "registration")
    return Target("POST", ceremony.path, ceremony.member.token, ceremony.body(), ceremony.assert_untouched)


# --- malformed bodies, on every endpoint ---------------------------------------------------------


def _exactly(size: int) -> str:
    """A JSON object of exactly ``size`` bytes with one unknown field."""
    return '{"x":"' + "a" * (size - 8) + '"}'


@pytest.mark.parametrize(
    "raw, status, code",
    [
        pytest.param('{"a":', 400, "MalformedJson", id="truncated-json"),
        pytest.param("", 400, "MalformedJson", id="empty"),
        pytest.param(" \r\n\t", 400, "MalformedJson", id="whitespace-only"),
        pytest.param("[]", 400, "MalformedJson", id="array"),
        pytest.param('"id_token"', 400, "MalformedJson", id="string"),
        pytest.param("42", 400, "MalformedJson", id="number"),
        pytest.param("null", 400, "MalformedJson", id="null"),
        pytest.param("true", 400, "MalformedJson", id="boolean"),
        pytest.param(b"\xff\xfe\xfd{}", 400, "MalformedJson", id="not-utf8"),
        pytest.param('{"x": ' + "9" * 5000 + "}", 400, "MalformedJson", id="5000-digit-number"),
        pytest.param("[" * 30_000 + "]" * 30_000, 400, "MalformedJson", id="30000-deep-array"),
        pytest.param('{"x": ' + "[" * 30_000 + "]" * 30_000 + "}", 400, "MalformedJson", id="30000-deep-field"),
        pytest.param("[" * 100_000, 413, "BodyTooLarge", id="100000-open-brackets"),
        pytest.param(json.dumps({"x": "a" * 70_000}), 413, "BodyTooLarge", id="70000-byte-body"),
        pytest.param(_exactly(MAX_BODY + 1), 413, "BodyTooLarge", id="64KiB-plus-one"),
        pytest.param(_exactly(MAX_BODY), 400, "MalformedRequest", id="exactly-64KiB-is-read"),
        pytest.param('{"bogus": 1}', 400, "MalformedRequest", id="only-unknown-field"),
    ],
)
def test_malformed_body_is_refused(
    api: KeywardClient, target: Target, raw: str | bytes, status: int, code: str
) -> None:
    assert_refused(api.call(target.method, target.path, token=target.token, raw=raw), status, code)
    target.untouched()


def test_unknown_field_next_to_valid_ones_is_refused(api: KeywardClient, target: Target) -> None:
    reply = api.call(target.method, target.path, token=target.token, body={**target.valid_body, "admin": True})
    assert_refused(reply, 400, "MalformedRequest")
    target.untouched()


def test_non_json_content_type_is_refused(api: KeywardClient, target: Target) -> None:
    reply = api.call(
        target.method,
        target.path,
        token=target.token,
        raw=json.dumps(target.valid_body),
        headers={"content-type": "text/plain"},
    )
    assert_refused(reply, 415, "UnsupportedMediaType")  # Chalice's own refusal
    target.untouched()


# --- missing fields and wrong types --------------------------------------------------------------

BAD_ID_TOKENS = [MISSING, None, 123, "", ["x"], {"jwt": "x"}, True, "a" * 16385]
BAD_CHALLENGE_IDS = [MISSING, None, 123, [], ["x" * 22], {"id": "x"}, "short", "x" * 23, "!" * 22]
BAD_CREDENTIALS = [MISSING, None, "string", 42, [], [{}], {}, True]


@pytest.mark.parametrize("id_token", BAD_ID_TOKENS, ids=_ids(BAD_ID_TOKENS))
def test_login_id_token_is_malformed(api: KeywardClient, id_token: Any) -> None:
    body = {} if id_token is MISSING else {"id_token": id_token}
    assert_refused(api.call("POST", "/auth/login", body=body), 400, "MalformedRequest")
    assert_no_login()


@pytest.mark.parametrize("id_token", ["not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
def test_login_with_garbage_id_token_is_not_authenticated(api: KeywardClient, id_token: str) -> None:
    # A string that is no valid ID token is a failed verification: 401 by the contract.
    assert_refused(api.call("POST", "/auth/login", body={"id_token": id_token}), 401, "InvalidIdToken")
    assert_no_login()


@pytest.mark.parametrize("challenge_id", BAD_CHALLENGE_IDS, ids=_ids(BAD_CHALLENGE_IDS))
def test_challenge_id_is_malformed(ceremony: Ceremony, challenge_id: Any) -> None:
    assert_refused(ceremony.send(ceremony.body(challenge_id=challenge_id)), 400, "MalformedRequest")
    ceremony.assert_untouched()


@pytest.mark.parametrize("credential", BAD_CREDENTIALS, ids=_ids(BAD_CREDENTIALS))
def test_credential_is_malformed(ceremony: Ceremony, credential: Any) -> None:
    assert_refused(ceremony.send(ceremony.body(credential=credential)), 400, "MalformedCredential")
    ceremony.assert_untouched()


# --- key names -----------------------------------------------------------------------------------

BAD_NAMES = [
    MISSING,
    None,
    42,
    ["My key"],
    {"name": "x"},
    True,
    "",
    "   ",
    "\t\n",
    "a" * 65,
    " " + "a" * 65 + " ",
    "bell\x07",
    "two\nlines",
    "tab\there",
    "nul\x00",
    "del\x7f",
    "zero\u200bwidth",
    "line\u2028sep",
]
# A name with a lone surrogate is no text at all: the whole body is refused (see below).


@pytest.mark.parametrize("name", BAD_NAMES, ids=_ids(BAD_NAMES))
def test_register_name_is_invalid(registration: Ceremony, name: Any) -> None:
    assert_refused(registration.send(registration.body(name=name)), 400, "InvalidKeyName")
    registration.assert_untouched()


@pytest.mark.parametrize("name", BAD_NAMES, ids=_ids(BAD_NAMES))
def test_rename_name_is_invalid(api: KeywardClient, renaming: tuple[SignedIn, str], name: Any) -> None:
    bob, key_id = renaming
    body = {} if name is MISSING else {"name": name}
    assert_refused(api.call("PATCH", f"/me/mfa/keys/{key_id}", token=bob.token, body=body), 400, "InvalidKeyName")
    assert_rename_untouched(key_id)


def test_64_char_name_with_surrounding_spaces_is_trimmed_and_accepted_at_registration(registration: Ceremony) -> None:
    reply = registration.send(registration.body(name="  " + "r" * 64 + " \t"))
    assert reply.status == 201 and reply.body["key"]["name"] == "r" * 64, reply.body


# Apart from the registration above: bob's first key there would end the session it renames with
# (a session from before his first key that never passed a key check).
def test_64_char_name_with_surrounding_spaces_is_trimmed_and_accepted_at_renaming(
    api: KeywardClient,
    renaming: tuple[SignedIn, str],
) -> None:
    bob, key_id = renaming
    reply = api.call("PATCH", f"/me/mfa/keys/{key_id}", token=bob.token, body={"name": " " + "p" * 64 + " "})
    assert reply.status == 200 and reply.body["key"]["name"] == "p" * 64, reply.body


# --- structurally broken credentials -------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def in_response(field: str, value: Any) -> Mutation:
    return lambda credential: credential["response"].__setitem__(field, value)


def without(field: str) -> Mutation:
    return lambda credential: credential["response"].pop(field)


def reencoded(field: str, change: Callable[[bytes], bytes]) -> Mutation:
    """Decode a binary response field, change its bytes, encode it again."""
    return lambda credential: credential["response"].__setitem__(
        field, b64url(change(b64url_decode(credential["response"][field])))
    )


def client_data(document: Any) -> Mutation:
    return in_response(
        "clientDataJSON", b64url(document if isinstance(document, bytes) else json.dumps(document).encode())
    )


def client_data_with(**fields: Any) -> Mutation:
    return reencoded("clientDataJSON", lambda raw: json.dumps({**json.loads(raw), **fields}).encode())


def attestation(change: Callable[[dict[str, Any]], Any]) -> Mutation:
    """Change the decoded attestation object (a CBOR map) and encode it again."""
    return reencoded("attestationObject", lambda raw: cbor2.dumps(change(cbor2.loads(raw))))


def auth_data(change: Callable[[bytes], bytes]) -> Mutation:
    return attestation(lambda decoded: {**decoded, "authData": change(decoded["authData"])})


def with_duplicate_key(raw: bytes) -> bytes:
    """The attestation object as it was, behind a first 'fmt' entry that its own 'fmt' repeats.

    CBOR leaves duplicate map keys to the decoder: one that kept either entry would let two
    readers of the same bytes disagree on what was attested.
    """
    decoded = cbor2.loads(raw)
    entries = [("fmt", "packed"), *decoded.items()]
    return bytes([0xA0 + len(entries)]) + b"".join(cbor2.dumps(key) + cbor2.dumps(value) for key, value in entries)


def ids(value: Any) -> Mutation:
    return lambda credential: credential.update(id=value, rawId=value)


SHARED_MUTATIONS: dict[str, Mutation] = {
    "rawId-not-base64url": ids("a"),
    "rawId-only-junk-chars": ids("!!!!"),
    "rawId-non-ascii": ids("\u00e4\u00e4\u00e4\u00e4"),
    "rawId-empty": ids(""),
    "rawId-number": ids(12345),
    "id-differs-from-rawId": lambda credential: credential.update(id=b64url(b"another credential")),
    "id-missing": lambda credential: credential.pop("id"),
    "type-not-public-key": lambda credential: credential.update(type="password"),
    "response-missing": lambda credential: credential.pop("response"),
    "response-string": lambda credential: credential.update(response="{}"),
    "clientDataJSON-missing": without("clientDataJSON"),
    "clientDataJSON-not-base64url": in_response("clientDataJSON", "a"),
    "clientDataJSON-not-json": client_data(b"not json {"),
    "clientDataJSON-not-utf8": client_data(b'{"type": "\xff"}'),
    "clientDataJSON-json-array": client_data([]),
    "clientDataJSON-json-string": client_data("webauthn"),
    "clientDataJSON-2000-deep": client_data(b"[" * 2000 + b"]" * 2000),
    "clientDataJSON-no-challenge": client_data({"type": "webauthn.create", "origin": "http://localhost:8000"}),
    "clientDataJSON-challenge-not-base64url": client_data_with(challenge="a"),
    "clientDataJSON-crossOrigin-string": client_data_with(crossOrigin="no"),
    "clientDataJSON-type-number": client_data_with(type=1),
}
REGISTRATION_MUTATIONS: dict[str, Mutation] = {
    "attestationObject-missing": without("attestationObject"),
    "attestationObject-not-base64url": in_response("attestationObject", "a"),
    "attestationObject-garbage-cbor": in_response("attestationObject", b64url(b"\xff\xfe garbage \x00")),
    "attestationObject-truncated-cbor": reencoded("attestationObject", lambda raw: raw[: len(raw) // 2]),
    "attestationObject-duplicate-key": reencoded("attestationObject", with_duplicate_key),
    "attestationObject-cbor-array": in_response("attestationObject", b64url(cbor2.dumps([1, 2, 3]))),
    "attestationObject-20000-deep-cbor": in_response("attestationObject", b64url(b"\x81" * 20_000 + b"\x00")),
    "attestationObject-no-authData": attestation(lambda decoded: {"fmt": "none", "attStmt": {}}),
    "authData-not-bytes": attestation(lambda decoded: {**decoded, "authData": "text"}),
    "authData-truncated-header": auth_data(lambda data: data[:36]),
    "authData-truncated-credential-id": auth_data(lambda data: data[: 37 + 16 + 2 + 10]),
    "authData-truncated-public-key": auth_data(lambda data: data[:-10]),
    "authData-without-attested-credential": auth_data(lambda data: data[:32] + bytes([data[32] & ~0x40]) + data[33:37]),
    "authData-trailing-bytes": auth_data(lambda data: data + b"\x00"),
    # Bytes after the CBOR map: python-fido2, which reads the object again for the metadata, refuses them.
    "attestationObject-trailing-bytes": reencoded("attestationObject", lambda raw: raw + b"\x00"),
    "attestationObject-trailing-map": reencoded("attestationObject", lambda raw: raw + cbor2.dumps({"fmt": "none"})),
    "authData-public-key-not-cose": auth_data(lambda data: data[: 37 + 16 + 2 + 32] + cbor2.dumps({1: 2})),
    "authData-names-another-credential": ids(b64url(b"\x01" * 32)),
}
VERIFY_MUTATIONS: dict[str, Mutation] = {
    "signature-missing": without("signature"),
    "signature-not-base64url": in_response("signature", "a"),
    "signature-empty": in_response("signature", ""),
    "signature-number": in_response("signature", 42),
    "authenticatorData-missing": without("authenticatorData"),
    "authenticatorData-not-base64url": in_response("authenticatorData", "a"),
    "authenticatorData-empty": in_response("authenticatorData", ""),
    "authenticatorData-truncated": reencoded("authenticatorData", lambda raw: raw[:36]),
    "authenticatorData-trailing-bytes": reencoded("authenticatorData", lambda raw: raw + b"\x00"),
    "authenticatorData-extensions-flag-without-extensions": reencoded(
        "authenticatorData", lambda raw: raw[:32] + bytes([raw[32] | 0x80]) + raw[33:]
    ),
    "userHandle-not-base64url": in_response("userHandle", "a"),
    "userHandle-number": in_response("userHandle", 7),
}


@pytest.mark.parametrize("mutation", SHARED_MUTATIONS.values(), ids=SHARED_MUTATIONS.keys())
def test_broken_credential_is_malformed(ceremony: Ceremony, mutation: Mutation) -> None:
    body = ceremony.body()
    mutation(body["credential"])
    assert_refused(ceremony.send(body), 400, "MalformedCredential")
    ceremony.assert_untouched()


@pytest.mark.parametrize("mutation", REGISTRATION_MUTATIONS.values(), ids=REGISTRATION_MUTATIONS.keys())
def test_broken_attestation_is_malformed(registration: Ceremony, mutation: Mutation) -> None:
    test_broken_credential_is_malformed(registration, mutation)


@pytest.mark.parametrize("mutation", VERIFY_MUTATIONS.values(), ids=VERIFY_MUTATIONS.keys())
def test_broken_assertion_is_malformed(verification: Ceremony, mutation: Mutation) -> None:
    test_broken_credential_is_malformed(verification, mutation)


@pytest.mark.parametrize(
    "fmt, statement",
    [
        ("bogus", {}),
        ("packed", {"alg": -7, "sig": b"not a signature"}),
        ("packed", {"alg": -7, "sig": b"x", "x5c": [b"not a certificate"]}),
        ("fido-u2f", {"sig": b"x", "x5c": [b"\x30\x00"]}),
        ("tpm", {"ver": "2.0", "alg": -7, "sig": b"x", "certInfo": b"x", "pubArea": b"x", "x5c": [b"x"]}),
        ("apple", {"x5c": "x"}),
    ],
)
def test_unverifiable_attestation_fails_the_ceremony(
    registration: Ceremony, fmt: str, statement: dict[str, Any]
) -> None:
    # Well-formed CBOR whose attestation does not verify is a failed ceremony (401), not malformed
    # input: it uses up the challenge by design, but stores nothing and is never a 5xx.
    body = registration.body()
    attestation(lambda decoded: {**decoded, "fmt": fmt, "attStmt": statement})(body["credential"])
    assert_refused(registration.send(body), 401, "CeremonyFailed")
    assert list(SecurityKey.scan()) == [] and list(CredentialClaim.scan()) == []
    assert Member.get("acme", "bob").key_count == 0


def test_megabyte_attestation_object_is_too_large(registration: Ceremony) -> None:
    body = registration.body()
    body["credential"]["response"]["attestationObject"] = b64url(bytes(1_000_000))
    assert_refused(registration.send(body), 413, "BodyTooLarge")
    registration.assert_untouched()


@pytest.mark.parametrize("length", [1024, 4096])
def test_overlong_credential_id_is_refused(ceremony: Ceremony, length: int) -> None:
    credential = ceremony.answer(SoftwareAuthenticator(credential_id=bytes(length)))
    assert_refused(ceremony.send(ceremony.body(credential=credential)), 400, "CredentialIdTooLong")
    ceremony.assert_untouched()


def test_credential_id_of_1023_bytes_is_accepted(registration: Ceremony) -> None:
    credential = registration.answer(SoftwareAuthenticator(credential_id=b"\x07" * 1023))
    reply = registration.send(registration.body(credential=credential))
    assert reply.status == 201, reply.body


# --- body-less endpoints: garbled tokens and key IDs ---------------------------------------------


@pytest.mark.parametrize(
    "authorization, code",
    [
        pytest.param(None, "MissingToken", id="none"),
        pytest.param("Bearer", "MissingToken", id="bearer-without-token"),
        pytest.param("Bearer    ", "MissingToken", id="bearer-blank"),
        pytest.param("Basic Ym9iOnB3", "MissingToken", id="basic-scheme"),
        pytest.param("Bearer garbage", "InvalidToken", id="garbage"),
        pytest.param("Bearer kw1.!!!.!!!.x.y", "InvalidToken", id="junk-names"),
        pytest.param("Bearer kw1._w.Ym9i.x.y", "InvalidToken", id="org-not-utf8"),
        pytest.param("Bearer kw1.YWNtZQ.Ym9i..y", "InvalidToken", id="empty-session-id"),
        pytest.param("Bearer kw1.YWNtZQ.Ym9i.nope.secret", "InvalidToken", id="unknown-session"),
        pytest.param("Bearer " + "x" * 5000, "InvalidToken", id="5000-chars"),
    ],
)
@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/me"),
        ("POST", "/me/mfa/keys/options"),
        ("POST", "/auth/mfa/options"),
        ("DELETE", "/me/mfa"),
    ],
)
def test_garbled_token_is_not_authenticated(
    api: KeywardClient,
    method: str,
    path: str,
    authorization: str | None,
    code: str,
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    assert_refused(api.call(method, path, headers=headers), 401, code)
    assert list(Session.scan()) == [] and list(Challenge.scan()) == []


@pytest.mark.parametrize("key_id", ["nope", "A" * 22, "A" * 21 + "!", "A" * 500, "\u00e4" * 22, "%00" * 8])
@pytest.mark.parametrize("method, body", [("DELETE", None), ("PATCH", {"name": "Renamed"})])
def test_unknown_or_garbled_key_id_is_not_found(
    api: KeywardClient,
    renaming: tuple[SignedIn, str],
    key_id: str,
    method: str,
    body: dict[str, Any] | None,
) -> None:
    bob, existing = renaming
    assert_refused(api.call(method, f"/me/mfa/keys/{key_id}", token=bob.token, body=body), 404, "KeyNotFound")
    assert_rename_untouched(existing)
    assert Member.get("acme", "bob").key_count == 1


def test_session_id_past_the_year_9999_is_not_authenticated(api: KeywardClient) -> None:
    # A session ID carries its start in 6 bytes of milliseconds (chalicelib.access.lifecycle), which can
    # name a time past the year 9999, where no datetime goes. The organization and user exist.
    bob = api.login()
    past_9999 = b64url((2**48 - 1).to_bytes(6, "big") + bytes(10))
    last_of_9999 = b64url((253402300799999).to_bytes(6, "big") + bytes(10))  # 9999-12-31T23:59:59.999Z
    for session_id in (past_9999, last_of_9999):
        made_up = f"kw1.YWNtZQ.Ym9i.{session_id}.secret"
        for method, path in (("GET", "/me"), ("POST", "/auth/logout")):
            assert_refused(api.call(method, path, token=made_up), 401, "InvalidToken")
    assert [session.user_id for session in Session.scan()] == ["bob"]
    assert api.call("GET", "/me", token=bob.token).status == 200


# --- strings that are not text -------------------------------------------------------------------
#
# A lone UTF-16 surrogate can be sent escaped ("\ud800") or as the bytes UTF-8 would give it if it
# could (CESU-8); either way no UTF-8 text holds it, and hashing, comparing or storing it fails.
# Anywhere in a body, a field's name included, it makes the body malformed JSON, before anything
# is read, used up, counted or audited.

LONE_SURROGATES = {
    "escaped-high": b'"\\ud800"',
    "escaped-low": b'"\\udfff"',
    "escaped-pair-reversed": b'"\\ude00\\ud83d"',
    "raw-bytes": b'"\xed\xa0\x80"',
    "escaped-inside-text": b'"abc\\udbffdef"',
}
# The two ways to send one, for the endpoints whose every test runs a ceremony.
TWO_FORMS = {name: LONE_SURROGATES[name] for name in ("escaped-high", "raw-bytes")}
_HOLE = "lone-surrogate-goes-here"


def with_lone_surrogate(body: dict[str, Any], path: tuple[str, ...], surrogate: bytes) -> bytes:
    """The body as JSON, the string at ``path`` (a field name, if it ends in ``"<name>"``) swapped for ``surrogate``."""
    body = copy.deepcopy(body)
    *parents, last = path
    holder = body
    for name in parents:
        holder = holder[name]
    if last == "<name>":
        holder[_HOLE] = "value"
    else:
        holder[last] = _HOLE
    raw = json.dumps(body).encode()
    assert raw.count(f'"{_HOLE}"'.encode()) == 1
    return raw.replace(f'"{_HOLE}"'.encode(), surrogate)


def audit_events() -> list[tuple[str, str]]:
    return sorted((event.org_id, event.event_key) for event in AuditEvent.scan())


def throttle_counts() -> dict[str, tuple[int, int | None]]:
    """Every subject's failed attempts, and the organizations' login counts (logins count too)."""
    return {item.subject: (int(item.failures), item.logins) for item in Throttle.scan(consistent_read=True)}


def test_a_lone_surrogate_never_reaches_a_pair(api: KeywardClient) -> None:
    # A surrogate pair is one character (here an emoji), and text like any other.
    renamed = with_lone_surrogate({"name": "x"}, ("name",), b'"key \\ud83d\\ude00"')
    bob = api.login()
    assert api.add_key(bob, name="Original").status == 201
    (key,) = SecurityKey.scan()
    reply = api.call("PATCH", f"/me/mfa/keys/{key.key_id}", token=bob.token, raw=renamed)
    assert reply.status == 200 and reply.body["key"]["name"] == "key \U0001f600", reply.body


@pytest.mark.parametrize("surrogate", LONE_SURROGATES.values(), ids=LONE_SURROGATES.keys())
@pytest.mark.parametrize("path", [("id_token",), ("nonce",), ("<name>",)], ids=lambda path: "/".join(path))
def test_login_with_a_lone_surrogate_is_malformed(api: KeywardClient, path: tuple[str, ...], surrogate: bytes) -> None:
    id_token = api.idp.mint(org="acme", user="bob", name="Bob", nonce="nonce-of-this-sign-in")
    body = {"id_token": id_token, "nonce": "nonce-of-this-sign-in"}
    assert_refused(
        api.call("POST", "/auth/login", raw=with_lone_surrogate(body, path, surrogate)), 400, "MalformedJson"
    )
    assert_no_login()
    assert audit_events() == []
    assert api.call("POST", "/auth/login", body=body).status == 200


def test_a_nonce_claim_with_a_lone_surrogate_is_another_nonce(api: KeywardClient) -> None:
    # The client chooses the nonce it sends the IdP, which signs it into the ID token as it came.
    id_token = api.idp.mint(org="acme", user="bob", nonce="\ud800")
    reply = api.call("POST", "/auth/login", body={"id_token": id_token, "nonce": "nonce-of-this-sign-in"})
    assert_refused(reply, 401, "NonceMismatch")
    assert_no_login()


@pytest.mark.parametrize("surrogate", TWO_FORMS.values(), ids=TWO_FORMS.keys())
@pytest.mark.parametrize(
    "path",
    [
        ("challenge_id",),
        ("credential", "id"),
        ("credential", "type"),
        ("credential", "response", "clientDataJSON"),
        ("credential", "response", "<name>"),
        ("<name>",),
    ],
    ids=lambda path: "/".join(path),
)
def test_a_ceremony_with_a_lone_surrogate_is_malformed(
    ceremony: Ceremony, path: tuple[str, ...], surrogate: bytes
) -> None:
    before = audit_events()
    reply = ceremony.api.call(
        "POST", ceremony.path, token=ceremony.member.token, raw=with_lone_surrogate(ceremony.body(), path, surrogate)
    )
    assert_refused(reply, 400, "MalformedJson")
    assert audit_events() == before
    ceremony.assert_untouched()


@pytest.mark.parametrize("path", [("name",), ("enrollment_code",)], ids=lambda path: "/".join(path))
def test_a_registration_with_a_lone_surrogate_is_malformed(registration: Ceremony, path: tuple[str, ...]) -> None:
    test_a_ceremony_with_a_lone_surrogate_is_malformed(registration, path, LONE_SURROGATES["escaped-high"])


@pytest.mark.parametrize("surrogate", TWO_FORMS.values(), ids=TWO_FORMS.keys())
def test_a_rename_with_a_lone_surrogate_is_malformed(
    api: KeywardClient,
    renaming: tuple[SignedIn, str],
    surrogate: bytes,
) -> None:
    bob, key_id = renaming
    raw = with_lone_surrogate({"name": "Renamed"}, ("name",), surrogate)
    assert_refused(api.call("PATCH", f"/me/mfa/keys/{key_id}", token=bob.token, raw=raw), 400, "MalformedJson")
    assert_rename_untouched(key_id)


@pytest.mark.parametrize("surrogate", TWO_FORMS.values(), ids=TWO_FORMS.keys())
@pytest.mark.parametrize("field", ["key_id", "secret"])
def test_a_backup_login_with_a_lone_surrogate_is_malformed_and_counts_no_attempt(
    api: KeywardClient,
    admin: SignedIn,
    field: str,
    surrogate: bytes,
) -> None:
    created = api.call("POST", "/org/backup-credentials", token=admin.token)
    assert created.status == 201, created.body
    body = {"key_id": created.body["key_id"], "secret": created.body["secret"]}
    before, throttles = audit_events(), throttle_counts()

    reply = api.call("POST", "/auth/backup-login", raw=with_lone_surrogate(body, (field,), surrogate))

    assert_refused(reply, 400, "MalformedJson")
    assert throttle_counts() == throttles and audit_events() == before
    assert api.call("POST", "/auth/backup-login", body=body).status == 200


@pytest.mark.parametrize("surrogate", TWO_FORMS.values(), ids=TWO_FORMS.keys())
def test_an_enrollment_code_with_a_lone_surrogate_is_malformed_and_uses_nothing(
    api: KeywardClient,
    admin: SignedIn,
    surrogate: bytes,
) -> None:
    assert api.call("PUT", "/org/mfa", token=admin.token, body={"enrollment": "pass_required"}).status == 200
    bob = api.login()
    options = api.registration_options(bob)
    assert options.status == 200 and options.body["enrollment_code_required"] is True, options.body
    body = {
        "challenge_id": options.body["challenge_id"],
        "name": "First key",
        "credential": SoftwareAuthenticator().register(options.body["publicKey"]),
        "enrollment_code": "x",
    }
    before, throttles = audit_events(), throttle_counts()

    reply = api.call(
        "POST", "/me/mfa/keys", token=bob.token, raw=with_lone_surrogate(body, ("enrollment_code",), surrogate)
    )

    assert_refused(reply, 400, "MalformedJson")
    # No failure slot of bob's taken, no refused code audited, the challenge still there.
    assert throttle_counts() == throttles and audit_events() == before
    issued = api.call("POST", "/org/members/bob/enrollment-passes", token=admin.token, body={})
    assert issued.status == 201, issued.body
    reply = api.call("POST", "/me/mfa/keys", token=bob.token, body={**body, "enrollment_code": issued.body["code"]})
    assert reply.status == 201, reply.body
