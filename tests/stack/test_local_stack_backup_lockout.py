"""Backup credentials' failure limit on the running local stack, over real HTTP from distinct
client addresses: someone who knows a key ID locks out only their own address.

On Linux every 127.x.y.z address is a distinct local source; the stack passes each request's
peer address to keyward as API Gateway would (``devstack.chalice_local``). The attacker binds
127.0.0.2, the admin 127.0.0.3.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

from tests.support.local_stack import LocalStack
from tests.support.stack_client import (
    Reply,
    StackClient,
    StackTables,
    session_id_of,
    unique_org,
)

ATTACKER, ADMIN = "127.0.0.2", "127.0.0.3"
MAX_FAILURES = 5


class FromAddress:
    """An HTTP connection to the stack from one local source address."""

    def __init__(self, stack: LocalStack, source: str) -> None:
        port = urlsplit(stack.api).port
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
        self._connection.connect()

    def backup_login(self, key_id: str, secret: str) -> Reply:
        self._connection.request(
            "POST",
            "/auth/backup-login",
            body=json.dumps({"key_id": key_id, "secret": secret}),
            headers={"content-type": "application/json"},
        )
        response = self._connection.getresponse()
        content = response.read()
        return Reply(status=response.status, body=json.loads(content) if content else None)

    def close(self) -> None:
        self._connection.close()


def backup_login(stack: LocalStack, source: str, key_id: str, secret: str) -> Reply:
    client = FromAddress(stack, source)
    try:
        return client.backup_login(key_id, secret)
    finally:
        client.close()


def backup_credentials(keyward: StackClient, org: str) -> tuple[str, str]:
    """An organization whose admin holds a key and created backup credentials: their key ID and secret."""
    _, authenticator, _ = keyward.member_with_key(org=org, user="admin", admin=True)
    admin = keyward.mfa_login(org=org, user="admin", authenticator=authenticator, admin=True)
    created = keyward.call("POST", "/org/backup-credentials", token=admin)
    assert created.status == 201, str(created)
    return created.body["key_id"], created.body["secret"]


def audit_sources(db: StackTables, org: str, action: str) -> list[str | None]:
    return [
        item.get("source_ip", {}).get("S") for item in db.scan_org("audit-log", org) if item["action"]["S"] == action
    ]


def throttle(db: StackTables, key_id: str, source: str) -> dict[str, Any] | None:
    return db.get("throttles", subject=f"backup-login#{key_id}#{source}")


def test_a_known_key_id_locks_out_only_the_attackers_address(keyward, db, local_stack):
    org = unique_org("lockout")
    key_id, secret = backup_credentials(keyward, org)

    guesses = [backup_login(local_stack, ATTACKER, key_id, f"guess {n}") for n in range(MAX_FAILURES + 1)]
    assert [(reply.status, reply.code) for reply in guesses] == (
        [(401, "InvalidBackupCredentials")] * MAX_FAILURES + [(429, "TooManyAttempts")]
    ), [str(reply) for reply in guesses]
    # Even the right secret waits, from the attacker's address.
    locked = backup_login(local_stack, ATTACKER, key_id, secret)
    assert (locked.status, locked.code) == (429, "TooManyAttempts"), str(locked)
    sessions_before = {item["session_id"]["S"] for item in db.scan_org("sessions-v2", org)}

    # The admin, from another address, gets in with the right secret.
    signed_in = backup_login(local_stack, ADMIN, key_id, secret)
    assert signed_in.status == 200, str(signed_in)
    assert signed_in.body["state"] == "active"
    me = keyward.me(signed_in.body["token"])
    assert me.body["session"]["state"] == "active"
    stored = db.get("sessions-v2", session_id=session_id_of(signed_in.body["token"]))
    assert stored["source_ip"] == {"S": ADMIN}
    assert {item["session_id"]["S"] for item in db.scan_org("sessions-v2", org)} == sessions_before | {
        session_id_of(signed_in.body["token"])
    }

    # Every failure is audited, with the address it came from; the lockout counts on.
    assert audit_sources(db, org, "backup_login.failed") == [ATTACKER] * MAX_FAILURES
    assert audit_sources(db, org, "backup_login.succeeded") == [ADMIN]
    assert int(throttle(db, key_id, ATTACKER)["failures"]["N"]) == MAX_FAILURES
    assert int(throttle(db, key_id, ADMIN)["failures"]["N"]) == 0  # the admin's slot was given back
    again = backup_login(local_stack, ATTACKER, key_id, secret)
    assert (again.status, again.code) == (429, "TooManyAttempts"), str(again)


def test_parallel_guesses_from_one_address_cannot_exceed_its_limit(keyward, db, local_stack):
    org = unique_org("parallel")
    key_id, secret = backup_credentials(keyward, org)
    attackers = 12
    barrier = threading.Barrier(attackers)
    replies: list[Reply | None] = [None] * attackers

    def guess(n: int) -> None:
        client = FromAddress(local_stack, ATTACKER)  # connected before the barrier releases them all
        try:
            barrier.wait(timeout=30)
            replies[n] = client.backup_login(key_id, f"parallel guess {n}")
        finally:
            client.close()

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(attackers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    outcomes = [(reply.status, reply.code) for reply in replies if reply is not None]
    assert len(outcomes) == attackers, outcomes
    assert set(outcomes) <= {(401, "InvalidBackupCredentials"), (429, "TooManyAttempts")}, outcomes
    checked = outcomes.count((401, "InvalidBackupCredentials"))
    assert 1 <= checked <= MAX_FAILURES, outcomes
    assert int(throttle(db, key_id, ATTACKER)["failures"]["N"]) <= MAX_FAILURES
    assert audit_sources(db, org, "backup_login.failed") == [ATTACKER] * checked
    # Another address is not held back by the burst.
    assert backup_login(local_stack, ADMIN, key_id, secret).status == 200
