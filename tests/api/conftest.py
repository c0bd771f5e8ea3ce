"""Fixtures of the API tests, which play requests through Chalice's test client in this process
(``api``, ``idp`` and the empty tables come from ``tests/conftest.py``)."""

from __future__ import annotations

import pytest

from tests.support.authenticator import SoftwareAuthenticator
from tests.support.keyward_client import KeywardClient, Member


@pytest.fixture
def admin(api: KeywardClient) -> Member:
    """alice, an admin of acme with a key, signed in through MFA (so her session's proof is recent)."""
    alice = api.login(user="alice", admin=True)
    key = SoftwareAuthenticator()
    assert api.add_key(alice, key).status == 201
    return api.mfa_login(org="acme", user="alice", authenticator=key, admin=True)
