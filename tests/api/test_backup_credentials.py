"""Backup credentials: the admins' break-glass login — creating, listing and deleting them, the
secret that is never kept, the login that bypasses MFA, its rate limit, its audit trail, and the
organization boundary."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.access import backup
from chalicelib.base import clock
from chalicelib.base.audit import Client
from chalicelib.base.errors import InvalidBackupCredentials, TooManyAttempts
from chalicelib.base.models import ALL_MODELS, BackupCredential, Organization, Throttle

PATH = "/org/backup-credentials"
INVALID = (401, "InvalidBackupCredentials")


def _create(api, admin) -> dict[str, Any]:
    reply = api.call("POST", PATH, token=admin.token)
    assert reply.status == 201, reply.body
    return reply.body


def _backup_login(api, key_id: object, secret: object):
    return api.call("POST", "/auth/backup-login", body={"key_id": key_id, "secret": secret})


def _unknown_key_id() -> str:
    return "bk_" + secrets.token_urlsafe(16)


def _audit(api, admin, action: str) -> list[dict[str, Any]]:
    reply = api.call("GET", f"/org/audit?action={action}", token=admin.token)
    assert reply.status == 200, reply.body
    return reply.body["events"]


def _subject(key_id: str, source_ip: str | None = "127.0.0.1") -> str:
    """The throttle of a key ID's failed attempts from one source (chalice's test client is 127.0.0.1)."""
    return f"backup-login#{key_id}#{backup.attempt_source(source_ip)}"


def _open_window(key_id: str, *, minutes_ago: int = 16) -> None:
    Throttle(_subject(key_id)).update(actions=[Throttle.window_start.set(clock.now() - timedelta(minutes=minutes_ago))])


# --- creating and listing ---------------------------------------------------------------------


def test_an_admin_creates_credentials_with_a_256_bit_secret_shown_once(api, admin):
    created = _create(api, admin)

    assert re.fullmatch(r"bk_[A-Za-z0-9_-]{22}", created["key_id"])
    assert created["created_at"].endswith("Z") and created["created_by"] == "alice"
    secret = created["secret"]
    assert len(secret) >= 43 and re.fullmatch(r"[A-Za-z0-9_-]+", secret)
    assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) >= 32
    assert _create(api, admin)["secret"] != secret

    listed = api.call("GET", PATH, token=admin.token)
    assert listed.status == 200
    shown = listed.body["backup_credentials"]
    assert [c["key_id"] for c in shown][0] == created["key_id"] and len(shown) == 2
    for credential in shown:
        assert not {k for k in credential if re.search("secret|hash|salt|scrypt", k, re.IGNORECASE)}, credential
    assert secret not in json.dumps(listed.body)


def test_the_secret_is_kept_only_as_an_scrypt_hash(api, admin):
    created = _create(api, admin)
    stored = BackupCredential.get(created["key_id"], consistent_read=True)
    assert stored.org_id == "acme" and stored.scrypt_n >= 2**14 and len(stored.salt) >= 16
    assert stored.secret_hash == hashlib.scrypt(
        created["secret"].encode(),
        salt=stored.salt,
        n=stored.scrypt_n,
        r=stored.scrypt_r,
        p=stored.scrypt_p,
        maxmem=2**26,
        dklen=32,
    )


def test_members_may_not_create_list_or_delete_them(api, admin):
    key_id = _create(api, admin)["key_id"]
    bob = api.login(user="bob")
    for method, path in (("POST", PATH), ("GET", PATH), ("DELETE", f"{PATH}/{key_id}")):
        reply = api.call(method, path, token=bob.token)
        assert (reply.status, reply.code) == (403, "AdminRequired"), (method, reply.body)
    assert BackupCredential.count() == 1


# --- the secret never leaks -------------------------------------------------------------------


def _forms(secret: str) -> list[str | bytes]:
    raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    forms: list[str | bytes] = [secret, secret.encode(), raw]
    for data in (secret.encode(), raw):
        forms += [
            base64.b64encode(data).decode(),
            base64.urlsafe_b64encode(data).decode().rstrip("="),
            binascii.hexlify(data).decode(),
            binascii.hexlify(data).decode().upper(),
        ]
    return forms


def _leaves(value: Any) -> Iterator[str | bytes]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield str(key)
            yield from _leaves(inner)
    elif isinstance(value, (list, tuple, set)):
        for inner in value:
            yield from _leaves(inner)
    elif isinstance(value, (str, bytes)):
        yield value
        if isinstance(value, bytes):  # binary attributes: look at their encodings too
            yield base64.b64encode(value).decode()
            yield value.hex()
    else:
        yield str(value)


def _raw_items() -> Iterator[tuple[str, dict[str, Any]]]:
    for model in ALL_MODELS:
        connection, start = model._get_connection(), None
        while True:
            page = connection.scan(consistent_read=True, exclusive_start_key=start)
            for item in page.get("Items", []):
                yield model.Meta.table_name, item
            start = page.get("LastEvaluatedKey")
            if not start:
                break


def _contains(haystack: str | bytes, needle: str | bytes) -> bool:
    if isinstance(haystack, bytes) != isinstance(needle, bytes):
        haystack = haystack.decode("latin-1") if isinstance(haystack, bytes) else haystack.encode("latin-1", "replace")
    return needle in haystack


@contextmanager
def _every_logger_at_debug(handler: logging.Handler) -> Iterator[None]:
    """Every logger (botocore, pynamodb, chalice, keyward...) at DEBUG into ``handler``."""
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    extra = [logger for logger in loggers[1:] if not logger.propagate]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    for logger in extra:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in extra:
            logger.removeHandler(handler)
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled


def _create_and_use(api, admin) -> str:
    """Create credentials, sign in with them and fail once; returns their secret."""
    created = _create(api, admin)
    assert _backup_login(api, created["key_id"], created["secret"]).status == 200
    wrong = created["secret"][:-2] + ("BB" if created["secret"].endswith("AA") else "AA")
    assert _backup_login(api, created["key_id"], wrong).status == 401
    return created["secret"]


def test_the_secret_is_stored_in_no_table(api, admin):
    secret = _create_and_use(api, admin)

    scanned: dict[str, int] = {}
    for table, item in _raw_items():
        scanned[table] = scanned.get(table, 0) + 1
        for leaf in _leaves(item):
            for form in _forms(secret):
                assert not _contains(leaf, form), f"secret ({form!r}) stored in {table}: {item}"
    # organization, members, security key and its claim, sessions, the credentials, throttle, audit
    assert len(scanned) >= 8, scanned


def test_the_secret_appears_in_no_log_record(api, admin, caplog):
    with _every_logger_at_debug(caplog.handler):
        secret = _create_and_use(api, admin)

    assert any(record.name.startswith("botocore") for record in caplog.records), "DEBUG records were not captured"
    for record in caplog.records:
        text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''} {record.__dict__!r}"
        for form in _forms(secret):
            assert not _contains(text, form), f"secret ({form!r}) logged by {record.name}: {text[:300]}"


# --- signing in -------------------------------------------------------------------------------


def test_a_backup_login_is_an_active_admin_session_that_bypasses_enforced_mfa(api, admin):
    created = _create(api, admin)
    enforced = api.call("PUT", "/org/mfa", token=admin.token, body={"enforced": True})
    assert enforced.status == 200 and enforced.body["enforced"] is True

    reply = _backup_login(api, created["key_id"], created["secret"])
    assert reply.status == 200, reply.body
    assert reply.body["state"] == "active"
    assert reply.body["user"]["admin"] is True
    assert reply.body["user"]["id"] == f"backup:{created['key_id']}"
    assert reply.body["org"] == {"id": "acme", "mfa_enforced": True}
    token = reply.body["token"]

    status = api.call("GET", "/org/mfa", token=token)
    assert status.status == 200 and status.body["enforced"] is True
    me = api.call("GET", "/me", token=token)
    assert me.status == 200 and me.body["user"]["id"] == f"backup:{created['key_id']}"
    assert me.body["session"]["state"] == "active"
    assert api.call("GET", "/org/members", token=token).status == 200

    options = api.call("POST", "/me/mfa/keys/options", token=token)
    assert (options.status, options.code) == (403, "NotForBackupSessions")
    registered = api.call(
        "POST", "/me/mfa/keys", token=token, body={"challenge_id": "x" * 22, "name": "k", "credential": {}}
    )
    assert (registered.status, registered.code) == (403, "NotForBackupSessions")
    assert BackupCredential.get(created["key_id"]).last_used_at is not None


@pytest.mark.parametrize("key_id", ["bk_" + "A" * 22, "bk_short", "not-a-key-id", "bk_" + "é" * 22])
def test_unknown_key_ids_get_the_same_answer_as_a_wrong_secret(api, admin, key_id):
    created = _create(api, admin)
    wrong = _backup_login(api, created["key_id"], secrets.token_urlsafe(32))
    unknown = _backup_login(api, key_id, created["secret"])
    assert (wrong.status, wrong.code) == INVALID
    assert (unknown.status, unknown.code, unknown.body) == (wrong.status, wrong.code, wrong.body)


def test_unknown_and_wrong_cost_the_same_scrypt_time(api, admin):
    created = _create(api, admin)

    def timed(key_id: str, secret: str) -> float:
        started = time.perf_counter()
        reply = _backup_login(api, key_id, secret)
        elapsed = time.perf_counter() - started
        assert (reply.status, reply.code) == INVALID
        return elapsed

    wrong, unknown, malformed = [], [], []
    for _ in range(7):
        Throttle(_subject(created["key_id"])).delete()
        wrong.append(timed(created["key_id"], secrets.token_urlsafe(32)))
        unknown.append(timed(_unknown_key_id(), secrets.token_urlsafe(32)))
        malformed.append(timed("nope-" + secrets.token_hex(4), secrets.token_urlsafe(32)))
    costs = []
    for _ in range(5):
        started = time.perf_counter()
        hashlib.scrypt(
            b"x", salt=b"s" * 16, n=backup.SCRYPT_N, r=backup.SCRYPT_R, p=backup.SCRYPT_P, maxmem=2**26, dklen=32
        )
        costs.append(time.perf_counter() - started)
    scrypt_cost = min(costs)

    medians = {
        name: statistics.median(times)
        for name, times in (("wrong", wrong), ("unknown", unknown), ("malformed", malformed))
    }
    for name in ("unknown", "malformed"):
        ratio = medians[name] / medians["wrong"]
        assert 0.5 <= ratio <= 2, (medians, scrypt_cost)
    assert min(medians.values()) >= 0.5 * scrypt_cost, (medians, scrypt_cost)


# --- the rate limit ---------------------------------------------------------------------------


def test_after_five_failures_even_the_right_secret_waits_for_the_window(api, admin):
    created = _create(api, admin)
    for _ in range(5):
        assert _backup_login(api, created["key_id"], "wrong").status == 401
    for secret in (created["secret"], "wrong"):
        reply = _backup_login(api, created["key_id"], secret)
        assert (reply.status, reply.code) == (429, "TooManyAttempts")

    _open_window(created["key_id"], minutes_ago=14)
    reply = _backup_login(api, created["key_id"], created["secret"])
    assert reply.status == 429
    # The window opened 14 minutes ago and lasts 15: about a minute to wait, and the answer says so.
    assert 55 <= int(reply.headers["Retry-After"]) <= 60, reply.headers
    _open_window(created["key_id"], minutes_ago=16)
    reply = _backup_login(api, created["key_id"], created["secret"])
    assert reply.status == 200, reply.body
    assert reply.body["state"] == "active"


def test_unknown_key_ids_are_limited_the_same_way(api):
    key_id = _unknown_key_id()
    codes = [_backup_login(api, key_id, "guess").code for _ in range(6)]
    assert codes == ["InvalidBackupCredentials"] * 5 + ["TooManyAttempts"]


def test_a_successful_login_uses_up_no_slot(api, admin):
    created = _create(api, admin)
    for _ in range(4):
        assert _backup_login(api, created["key_id"], "wrong").status == 401
    for _ in range(3):
        assert _backup_login(api, created["key_id"], created["secret"]).status == 200
    assert (_backup_login(api, created["key_id"], "wrong").code) == "InvalidBackupCredentials"
    assert (_backup_login(api, created["key_id"], created["secret"]).code) == "TooManyAttempts"


def test_parallel_guesses_cannot_exceed_the_limit(api, admin):
    created = _create(api, admin)
    barrier = threading.Barrier(12)

    def guess(_: int) -> object:
        barrier.wait()
        try:
            # From the address chalice's test client reports, so the login below is the same source.
            return backup.sign_in(
                key_id=created["key_id"], secret=secrets.token_urlsafe(32), client=Client(source_ip="127.0.0.1")
            )
        except Exception as error:
            return error

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(guess, range(12)))

    kinds = [type(outcome).__name__ for outcome in outcomes]
    assert set(kinds) <= {"InvalidBackupCredentials", "TooManyAttempts"}, outcomes
    assert 1 <= kinds.count("InvalidBackupCredentials") <= 5, kinds
    assert kinds.count("TooManyAttempts") >= 7, kinds
    throttle = Throttle.get(_subject(created["key_id"]), consistent_read=True)
    assert throttle.failures <= 5
    assert len(_audit(api, admin, "backup_login.failed")) == kinds.count("InvalidBackupCredentials")
    if kinds.count("InvalidBackupCredentials") == 5:
        assert _backup_login(api, created["key_id"], created["secret"]).code == "TooManyAttempts"


def test_failures_count_per_source_and_lock_out_only_that_source(api, admin):
    created = _create(api, admin)
    attacker, admins_laptop = Client(source_ip="203.0.113.7"), Client(source_ip="198.51.100.20")

    def attempt(secret: str, client: Client) -> str:
        try:
            backup.sign_in(key_id=created["key_id"], secret=secret, client=client)
            return "signed in"
        except (InvalidBackupCredentials, TooManyAttempts) as refusal:
            return type(refusal).__name__

    assert [attempt("wrong", attacker) for _ in range(6)] == ["InvalidBackupCredentials"] * 5 + ["TooManyAttempts"]
    assert attempt(created["secret"], attacker) == "TooManyAttempts"
    assert attempt(created["secret"], admins_laptop) == "signed in"
    assert attempt("wrong", admins_laptop) == "InvalidBackupCredentials"
    assert Throttle.get(_subject(created["key_id"], "203.0.113.7"), consistent_read=True).failures == 5
    assert Throttle.get(_subject(created["key_id"], "198.51.100.20"), consistent_read=True).failures == 1
    failed = _audit(api, admin, "backup_login.failed")
    assert sorted(event["source_ip"] for event in failed) == ["198.51.100.20"] + ["203.0.113.7"] * 5


@pytest.mark.parametrize(
    ("source_ip", "source"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "unknown"),
        ("", "unknown"),
        ("not an address", "unknown"),
    ],
)
def test_an_ipv6_client_is_one_source_per_64(source_ip, source):
    assert backup.attempt_source(source_ip) == source


# --- deleting ---------------------------------------------------------------------------------


def test_another_admin_deletes_them_and_their_sessions_end(api, admin):
    created = _create(api, admin)
    token = _backup_login(api, created["key_id"], created["secret"]).body["token"]
    assert api.call("GET", "/me", token=token).status == 200
    carol = api.login(user="carol", admin=True)

    deleted = api.call("DELETE", f"{PATH}/{created['key_id']}", token=carol.token)
    assert deleted.status == 204, deleted.body

    assert api.call("GET", "/me", token=token).status == 401
    assert api.call("GET", "/org/mfa", token=token).status == 401
    assert (_backup_login(api, created["key_id"], created["secret"]).code) == "InvalidBackupCredentials"
    assert api.call("GET", PATH, token=admin.token).body["backup_credentials"] == []
    assert not Organization.get("acme").backup_key_ids


@pytest.mark.parametrize("key_id", ["bk_" + "Z" * 22, "nothing"])
def test_deleting_unknown_credentials_is_not_found(api, admin, key_id):
    reply = api.call("DELETE", f"{PATH}/{key_id}", token=admin.token)
    assert (reply.status, reply.code) == (404, "BackupCredentialsNotFound")


# --- the organization boundary ----------------------------------------------------------------


def test_another_organizations_admin_can_neither_see_nor_delete_them(api, admin):
    acme = _create(api, admin)
    wesker = api.login(org="umbrella", user="wesker", admin=True)
    umbrella = _create(api, wesker)

    listed = api.call("GET", PATH, token=wesker.token).body["backup_credentials"]
    assert [c["key_id"] for c in listed] == [umbrella["key_id"]]
    reply = api.call("DELETE", f"{PATH}/{acme['key_id']}", token=wesker.token)
    assert (reply.status, reply.code) == (404, "BackupCredentialsNotFound")
    assert BackupCredential.get(acme["key_id"], consistent_read=True).org_id == "acme"
    assert [c["key_id"] for c in api.call("GET", PATH, token=admin.token).body["backup_credentials"]] == [
        acme["key_id"]
    ]


def test_acmes_credentials_open_an_acme_session_only(api, admin):
    acme = _create(api, admin)
    api.login(org="umbrella", user="wesker", admin=True)
    api.login(org="umbrella", user="ada")

    reply = _backup_login(api, acme["key_id"], acme["secret"])
    assert reply.body["org"]["id"] == "acme"
    members = api.call("GET", "/org/members", token=reply.body["token"])
    assert members.status == 200
    assert {m["id"] for m in members.body["members"]} == {"alice"}
    assert "wesker" not in json.dumps(members.body) and "umbrella" not in json.dumps(members.body)


# --- the audit trail --------------------------------------------------------------------------


def test_every_step_leaves_an_audit_event_with_actor_and_target(api, admin):
    created = _create(api, admin)
    key_id = created["key_id"]
    assert _backup_login(api, key_id, "wrong").status == 401
    assert _backup_login(api, key_id, created["secret"]).status == 200
    assert api.call("DELETE", f"{PATH}/{key_id}", token=admin.token).status == 204

    expected = {
        "backup_credentials.created": "alice",
        "backup_login.failed": f"backup credentials {key_id}",
        "backup_login.succeeded": f"backup credentials {key_id}",
        "backup_credentials.deleted": "alice",
    }
    for action, actor in expected.items():
        events = _audit(api, admin, action)
        assert len(events) == 1, (action, events)
        assert (events[0]["actor"], events[0]["target"]) == (actor, key_id), events[0]
        assert created["secret"] not in json.dumps(events[0])
