"""Property-based tests: WebAuthn responses derived from valid ones by mutation are refused.

Every example starts from real responses of ``SoftwareAuthenticator`` to fresh options (each
example needs an unused challenge), changes them — flipped, overwritten, inserted, deleted or
truncated bytes of the decoded binary fields, other JSON values in clientDataJSON, other flags,
random CBOR as the attestation object, random signatures and user handles, fields swapped in from
another valid response — and posts the result. Properties: the reply is a 4xx with ``Code`` and
``Message`` (never 2xx, never 5xx), and nothing changed: no SecurityKey or CredentialClaim
appears, and the member's key_count, the session's state and token, and every key's sign_count,
last_used_at and backed_up stay as they were. (Audit events and used-up challenges are expected:
a well-formed response that fails verification is a 401 that consumes its challenge by design.)

Only bytes the verifier must check are mutated. Left alone, as the verifier legitimately ignores
them: ``transports``, ``clientExtensionResults``, ``authenticatorAttachment``, and the registration
JSON's convenience copies ``authenticatorData``, ``publicKey``, ``publicKeyAlgorithm`` (py_webauthn
reads the attestation object only). Registrations use packed self-attestation, so clientDataJSON
and authData are signed as in an assertion and *any* change to them must fail; with ``none``
attestation an extra clientDataJSON member, the UV flag or the BE flag verify legitimately.
Mutations that leave the decoded response identical, or equal to another valid answer to the same
challenge, are discarded with ``assume`` — e.g. bytes appended after the attestation object's
CBOR (cbor2, hence py_webauthn, ignores trailing bytes).

A session is reused across examples only while it is untouched, and the checks compare the tables
right before and after the one request, so examples stay independent (see ``Signer``).

The default example count keeps this file around a minute. For a longer hunt:
    KEYWARD_HYPOTHESIS_EXAMPLES=2000 python -m pytest tests/api/test_webauthn_properties.py --hypothesis-show-statistics
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, Phase, assume, event, given, settings
from hypothesis import strategies as st

from chalicelib.base.models import CredentialClaim, Member, Session
from tests.support.authenticator import SoftwareAuthenticator, b64url, b64url_decode
from tests.support.key_use import stored_keys
from tests.support.keyward_client import KeywardClient, Reply, enforce_in_table

EXAMPLES = int(os.environ.get("KEYWARD_HYPOTHESIS_EXAMPLES", "100"))  # per test
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the work tree
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # "explain" replays hundreds of requests
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_users = itertools.count()

# --- strategies ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.binary(max_size=80)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.integers(-30, 30) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ATTESTATION_FORMATS = ["none", "packed", "fido-u2f", "tpm", "apple", "android-key", "android-safetynet", "bogus"]
# Statements whose keys are the ones the formats read, so that random values reach their verifiers.
att_statements = st.dictionaries(
    st.sampled_from(["alg", "sig", "x5c", "ver", "certInfo", "pubArea", "response", "ecdaaKeyId"]),
    st.sampled_from([-7, -8, -257, "2.0"])
    | st.binary(max_size=80)
    | st.lists(st.binary(max_size=80), max_size=2)
    | cbor_values,
    max_size=6,
)
CLIENT_DATA_VALUES = {
    "type": ["webauthn.create", "webauthn.get", "payment.get"],
    "origin": [
        "http://localhost:8000",
        "https://localhost:8000",
        "http://localhost:8001",
        "http://localhost:8000/",
        "http://evil.example",
        "null",
    ],
    "crossOrigin": [True, False, "false", 0],
}


@st.composite
def edited(draw: st.DrawFn, raw: bytes) -> bytes:
    """``raw`` after 1-3 byte edits: bit flip, overwrite, insert, delete, truncate.

    Positions are drawn in a fixed range and taken modulo the length: lengths vary between
    examples (a DER signature is 70-72 bytes), and what hypothesis draws must not depend on them.
    """
    out = bytearray(raw)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, 4095))
        if op == "insert":
            at = position % (len(out) + 1)
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
            continue
        argument = draw(
            st.integers(0, 7) if op == "flip" else st.integers(0, 255) if op == "set" else st.integers(1, 8)
        )
        if not out:
            continue
        at = position % len(out)
        if op == "flip":
            out[at] ^= 1 << argument
        elif op == "set":
            out[at] = argument
        elif op == "delete":
            del out[at : at + argument]
        else:
            del out[at:]
    return bytes(out)


# --- reading and writing the binary fields of a credential ---------------------------------------


def _attestation(credential: dict[str, Any]) -> dict[str, Any]:
    return cbor2.loads(b64url_decode(credential["response"]["attestationObject"]))


def get_field(credential: dict[str, Any], name: str) -> bytes:
    if name == "rawId":
        return b64url_decode(credential["rawId"])
    if name in ("authData", "sig"):
        attestation = _attestation(credential)
        return attestation["authData"] if name == "authData" else attestation["attStmt"]["sig"]
    return b64url_decode(credential["response"][name])


def set_field(credential: dict[str, Any], name: str, value: bytes) -> None:
    if name == "rawId":  # id must equal rawId, or it is refused before anything else
        credential["id"] = credential["rawId"] = b64url(value)
    elif name in ("authData", "sig"):
        attestation = _attestation(credential)
        if name == "authData":
            attestation["authData"] = value
        else:
            attestation["attStmt"]["sig"] = value
        credential["response"]["attestationObject"] = b64url(cbor2.dumps(attestation, canonical=True))
    else:
        credential["response"][name] = b64url(value)


def decoded(credential: dict[str, Any], kind: str) -> tuple[Any, ...]:
    """What the verifier sees of a credential: equal tuples are the same response."""
    response = credential["response"]
    head = (credential["id"], credential["rawId"], credential["type"], b64url_decode(response["clientDataJSON"]))
    if kind == "assertion":
        return head + tuple(response.get(name) for name in ("authenticatorData", "signature", "userHandle"))
    try:
        return head + (cbor2.loads(b64url_decode(response["attestationObject"])),)
    except (cbor2.CBORDecodeError, RecursionError):  # unparseable: compared as it was sent
        return head + (response["attestationObject"],)


# --- the valid responses an example mutates, and what must not change ----------------------------


class Signer:
    """A session in ``state``, signed in once and reused while untouched (as it stays unless a
    mutation got through); after a change the next example signs in anew (for registration, as a
    new member), so examples stay independent while hypothesis replays and shrinks a failure."""

    def __init__(self, api: KeywardClient, *, org: str, state: str, fresh_user: bool) -> None:
        self.api, self.org, self.state, self.fresh_user = api, org, state, fresh_user
        self.user = self.token = ""

    def options(self, path: str) -> tuple[str, dict[str, Any]]:
        if not self.token:
            self.user = f"user{next(_users)}" if self.fresh_user else "bob"
            member = self.api.login(org=self.org, user=self.user)
            assert member.state == self.state, member.state
            self.token = member.token
        reply = self.api.call("POST", path, token=self.token)
        assert reply.status == 200, reply.body
        return reply.body["challenge_id"], reply.body["publicKey"]

    def snapshot(self) -> tuple[Any, ...]:
        session = Session.get(self.token.split(".")[3], consistent_read=True)
        return (
            sorted((k.org_id, k.key_id, k.sign_count, k.last_used_at, k.backed_up) for k in stored_keys()),
            sorted(claim.key_id for claim in CredentialClaim.scan(consistent_read=True)),
            Member.get(self.org, self.user, consistent_read=True).key_count,
            (session.state, session.token_hash, session.verified_key_id),
        )


@dataclass
class World:
    signer: Signer
    kind: str  # "registration" or "assertion"
    challenge_id: str
    valid: dict[str, Any]  # answers challenge_id
    same_challenge: dict[str, Any]  # another authenticator's valid answer to the same challenge
    other_challenge: dict[str, Any]  # the same authenticator's valid answer to another challenge

    def send(self, credential: dict[str, Any]) -> Reply:
        body = {"challenge_id": self.challenge_id, "credential": credential}
        if self.kind == "registration":
            body["name"] = "Fuzzed"
        path = "/me/mfa/keys" if self.kind == "registration" else "/auth/mfa/verify"
        return self.signer.api.call("POST", path, token=self.signer.token, body=body)


def registration_world(signer: Signer, algorithm: str) -> World:
    """A member who must register a key (the organization enforces MFA), with fresh options."""
    challenge_id, options = signer.options("/me/mfa/keys/options")
    first = SoftwareAuthenticator(algorithm=algorithm, attestation="packed")
    second = SoftwareAuthenticator(algorithm="EdDSA" if algorithm == "ES256" else "ES256", attestation="packed")
    # A valid answer to another challenge needs no options: the server only sees that it differs.
    elsewhere = first.register(options, challenge=b64url(os.urandom(32)))
    return World(signer, "registration", challenge_id, first.register(options), second.register(options), elsewhere)


def assertion_world(signer: Signer, keys: list[SoftwareAuthenticator], primary: int) -> World:
    """bob, who holds ``keys``, in a session that is mfa_required, with fresh options."""
    challenge_id, options = signer.options("/auth/mfa/options")
    first, second = keys[primary], keys[1 - primary]
    elsewhere = first.authenticate(options, challenge=b64url(os.urandom(32)))
    return World(
        signer, "assertion", challenge_id, first.authenticate(options), second.authenticate(options), elsewhere
    )


@pytest.fixture
def registering(api: KeywardClient) -> Signer:
    api.login(org="strict", user="admin", admin=True)
    enforce_in_table("strict")
    signer = Signer(api, org="strict", state="registration_required", fresh_user=True)
    # The unmutated responses do pass: refusals below are the mutations' doing, not the set-up's.
    for algorithm in ("ES256", "EdDSA"):
        world = registration_world(signer, algorithm)
        assert world.send(world.valid).status == 201
        assert signer.snapshot()[3][0] == "active"
        signer.token = ""
    return signer


@pytest.fixture
def verifying(api: KeywardClient) -> tuple[Signer, list[SoftwareAuthenticator]]:
    keys = [SoftwareAuthenticator(algorithm="ES256"), SoftwareAuthenticator(algorithm="EdDSA")]
    bob = api.login(org="acme", user="bob")
    for key in keys:
        assert api.add_key(bob, key).status == 201
    signer = Signer(api, org="acme", state="mfa_required", fresh_user=False)
    for primary in (0, 1):
        world = assertion_world(signer, keys, primary)
        reply = world.send(world.valid)
        assert reply.status == 200 and reply.body["state"] == "active", reply.body
        signer.token = ""
    return signer, keys


# --- mutations -----------------------------------------------------------------------------------

BINARY_FIELDS = {
    "registration": ["clientDataJSON", "attestationObject", "authData", "sig", "rawId"],
    "assertion": ["clientDataJSON", "authenticatorData", "signature", "rawId"],
}
SWAPPABLE = {
    "registration": [("id", "rawId"), ("clientDataJSON",), ("attestationObject",)],
    "assertion": [("id", "rawId"), ("clientDataJSON",), ("authenticatorData",), ("signature",)],
}


def mutate(draw: st.DrawFn, world: World, credential: dict[str, Any]) -> str:
    """Apply one drawn mutation to ``credential`` in place; returns its name for the statistics."""
    kind = world.kind
    extra = ["random_attestation"] if kind == "registration" else ["random_signature", "user_handle"]
    how = draw(st.sampled_from(["edit", "flags", "client_data", "swap", *extra]))
    if how == "edit":
        name = draw(st.sampled_from(BINARY_FIELDS[kind]))
        set_field(credential, name, draw(edited(get_field(credential, name))))
        return f"edit {name}"
    if how == "flags":  # every flag, UV included, is signed here: any other byte must fail
        name = "authData" if kind == "registration" else "authenticatorData"
        data = get_field(credential, name)
        set_field(credential, name, data[:32] + bytes([data[32] ^ draw(st.integers(1, 255))]) + data[33:])
        return "flags"
    if how == "client_data":
        document = json.loads(get_field(credential, "clientDataJSON"))
        member = draw(st.sampled_from(["type", "challenge", "origin", "crossOrigin"]) | st.text(max_size=8))
        choices = json_values | st.sampled_from(CLIENT_DATA_VALUES.get(member, [None]))
        if member == "challenge":
            choices |= st.binary(min_size=32, max_size=32).map(b64url)
            choices |= st.just(json.loads(get_field(world.other_challenge, "clientDataJSON"))["challenge"])
        if member in document and draw(st.booleans()):
            del document[member]
        else:
            document[member] = draw(choices)
        set_field(credential, "clientDataJSON", json.dumps(document, separators=(",", ":")).encode())
        return f"clientDataJSON.{member if member in CLIENT_DATA_VALUES or member == 'challenge' else '*'}"
    if how == "swap":
        partner_name = draw(st.sampled_from(["same_challenge", "other_challenge"]))
        partner = getattr(world, partner_name)
        for names in draw(st.lists(st.sampled_from(SWAPPABLE[kind]), min_size=1, unique=True)):
            for name in names:
                (credential if name in ("id", "rawId") else credential["response"])[name] = copy.deepcopy(
                    (partner if name in ("id", "rawId") else partner["response"])[name]
                )
        return f"swap with {partner_name}"
    if how == "random_signature":
        set_field(credential, "signature", draw(st.binary(max_size=80)))
        return "random signature"
    if how == "user_handle":
        set_field(credential, "userHandle", draw(st.binary(min_size=1, max_size=64)))
        return "userHandle"
    # random_attestation: anything CBOR, or a statement of any format around the valid authData
    # (fmt "none" with an empty statement excluded: attestation is not required, that verifies).
    authenticator_data = get_field(credential, "authData")
    value = draw(
        cbor_values
        | st.fixed_dictionaries(
            {
                "fmt": st.sampled_from(ATTESTATION_FORMATS) | st.text(max_size=8),
                "attStmt": att_statements,
                "authData": st.just(authenticator_data) | st.binary(max_size=300),
            }
        ).filter(lambda o: not (o["fmt"] == "none" and o["attStmt"] == {} and o["authData"] == authenticator_data))
    )
    credential["response"]["attestationObject"] = b64url(cbor2.dumps(value))
    return "random attestationObject"


def check_refused(world: World, data: st.DataObject) -> None:
    credential = copy.deepcopy(world.valid)
    # One mutation (of 1-3 byte edits, or of several swapped fields): a second one on top would
    # mostly hit bytes the first already made unparseable.
    event(mutate(data.draw, world, credential))
    # Discard no-ops: the verifier would see the valid response, or another valid answer to this challenge.
    assume(
        decoded(credential, world.kind)
        not in (decoded(world.valid, world.kind), decoded(world.same_challenge, world.kind))
    )
    before = world.signer.snapshot()
    assert before[3][0] == world.signer.state
    reply = world.send(credential)
    after = world.signer.snapshot()
    if reply.status < 400 or after != before:
        world.signer.token = ""
    event(f"{reply.status} {reply.code}")
    assert 400 <= reply.status < 500, (reply.status, reply.body)
    assert isinstance(reply.body, dict) and isinstance(reply.body.get("Code"), str) and reply.body["Code"], reply.body
    assert isinstance(reply.body.get("Message"), str) and reply.body["Message"], reply.body
    assert after == before


# --- the properties ------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data(), algorithm=st.sampled_from(["ES256", "EdDSA"]))
def test_mutated_registration_is_refused_and_changes_nothing(
    api: KeywardClient,
    registering: Signer,
    data: st.DataObject,
    algorithm: str,
) -> None:
    check_refused(registration_world(registering, algorithm), data)


@PROPERTY
@given(data=st.data(), primary=st.sampled_from([0, 1]))
def test_mutated_assertion_is_refused_and_changes_nothing(
    api: KeywardClient,
    verifying: tuple[Signer, list[SoftwareAuthenticator]],
    data: st.DataObject,
    primary: int,
) -> None:
    signer, keys = verifying
    check_refused(assertion_world(signer, keys, primary), data)


def test_none_attestation_with_a_statement_is_refused(api: KeywardClient, registering: Signer) -> None:
    """Found by the property above: py_webauthn reads only the statement fields it knows, so a
    "none" attestation carrying one (here an ECDAA key ID) passed unseen."""
    world = registration_world(registering, "ES256")
    credential = copy.deepcopy(world.valid)
    authenticator_data = get_field(credential, "authData")
    statement = {"fmt": "none", "attStmt": {"ecdaaKeyId": -7}, "authData": authenticator_data}
    credential["response"]["attestationObject"] = b64url(cbor2.dumps(statement))
    before = registering.snapshot()
    reply = world.send(credential)
    assert (reply.status, reply.code) == (400, "MalformedCredential")
    assert registering.snapshot() == before
