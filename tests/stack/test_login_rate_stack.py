"""The organization's login rate over real HTTP, against a stack whose organizations may each
start 2 sessions a second: one organization's login storm is answered 429 while another
organization's member signs in in the same moment."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.local_stack import LocalStack, running_local_stack
from tests.support.stack_client import Reply, StackClient, StackTables, unique_org

RATE = 2
STORM = 12


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("KEYWARD_ORG_LOGIN_RATE", str(RATE))
        with running_local_stack(tmp_path_factory.mktemp("local-stack-login-rate")) as stack:
            yield stack


def _login(keyward: StackClient, *, org: str, user: str) -> Reply:
    id_token = keyward.idp.mint(org=org, user=user, name=user.title(), email=f"{user}@{org}.example")
    return keyward.call("POST", "/auth/login", body={"id_token": id_token})


def test_one_organizations_storm_gets_429_while_anothers_member_signs_in(keyward: StackClient, db: StackTables):
    storm, calm = unique_org("storm"), unique_org("calm")
    started = time.time()
    replies = keyward.in_parallel(
        [lambda n=n: _login(keyward, org=storm, user=f"user{n}") for n in range(STORM)]
        + [lambda: _login(keyward, org=calm, user="carol")]
    )
    # Each second the storm spans admits RATE of its logins.
    seconds = int(time.time()) - int(started) + 1
    stormed, calmed = replies[:STORM], replies[STORM]

    assert calmed.status == 200, calmed
    passed = [reply for reply in stormed if reply.status == 200]
    refused = [reply for reply in stormed if reply.status != 200]
    assert refused, f"all {STORM} logins of one organization passed in {seconds} s"
    assert len(passed) <= RATE * seconds
    assert {(reply.status, reply.code, reply.headers.get("retry-after")) for reply in refused} == {
        (429, "OrganizationRateLimited", "1")
    }
    # A refused login started no session and recorded no login.
    assert len(db.scan_org("sessions-v2", storm)) == len(passed)
    assert len([event for event in db.audit(storm) if event["action"] == "login"]) == len(passed)

    # The client does what Retry-After says, and is let in.
    time.sleep(1.0)
    assert _login(keyward, org=storm, user="user0").status == 200
