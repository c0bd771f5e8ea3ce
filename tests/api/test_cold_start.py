"""What a cold start loads: the wiring every function needs, and not the domain modules only some
requests need (chalicelib/base/deferred.py), which load on the first request that uses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
# Each of these serves only some requests: the stream function, sign-in, MFA, key management,
# backup credentials, the member list, the WebAuthn ceremonies, webhook settings, the local
# outbox, the member counters, joining (sign-in) and leaving (offboarding), the paged lists, and token
# introspection and the API Gateway authorizer (a function of its own).
ONLY_SOME_REQUESTS = {
    "chalicelib.access.joining",
    "chalicelib.org.offboarding",
    "chalicelib.org.enforcement",
    "chalicelib.access.identity",
    "chalicelib.access.mfa",
    "chalicelib.keys.registration",
    "chalicelib.keys.management",
    "chalicelib.keys.org_keys",
    "chalicelib.ceremony.challenges",
    "chalicelib.access.backup",
    "chalicelib.org.members",
    "chalicelib.ceremony.ceremonies",
    "webauthn",
    "chalicelib.delivery.webhooks",
    "chalicelib.delivery.notifications",
    "chalicelib.counters.coverage",
    "chalicelib.base.pagination",
    "chalicelib.provider.introspection",
    "chalicelib.provider.authorizer",
}
# Each of these serves every authenticated request, but not the console's files, the OpenAPI
# document, or the stream and schedule functions (which import app.py as well): the first
# request that reads a session loads them, and PynamoDB with them.
ONLY_AUTHENTICATED_REQUESTS = {
    "chalicelib.access.sessions",
    "chalicelib.access.login_rate",
    "chalicelib.base.models",
    "chalicelib.base.audit",
    "chalicelib.base.storage",
    "chalicelib.access.grace",
    "chalicelib.access.lifecycle",
    "chalicelib.base.query_values",
    "pynamodb.models",
}


def _executed_after(statements: str) -> set[str]:
    """The modules a fresh interpreter has executed after ``statements``: a deferred module is in
    sys.modules from the start, but its type is ModuleType only once it has run."""
    from devstack.environment import local_environment
    from devstack.idp import DevIdentityProvider

    environment = {
        **os.environ,
        **local_environment(endpoint="http://127.0.0.1:9", jwks_json=DevIdentityProvider.ephemeral().jwks_json()),
    }
    probe = (
        f"import sys, types, json\n{statements}\n"
        "print(json.dumps([n for n, m in list(sys.modules.items()) if type(m) is types.ModuleType]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    # The probe's list is the last line: keyward's log lines (a refusal's) are printed before it.
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_a_cold_start_loads_only_what_every_request_needs():
    executed = _executed_after("import app")
    assert {"app", "chalicelib.api.http", "chalicelib.api.org", "chalicelib.base.config"} <= executed
    assert not ONLY_SOME_REQUESTS & executed
    assert not ONLY_AUTHENTICATED_REQUESTS & executed


def _first_request(method: str, path: str) -> str:
    """Statements that import app and make one request through Chalice's test client, asserting
    its status and reason code against ``EXPECTED``, which the statements before them set."""
    return (
        "import app\n"
        "from chalice.test import Client\n"
        "with Client(app.app) as client:\n"
        f"    answer = client.http.request({method!r}, {path!r}, headers={{}})\n"
        "code = json.loads(answer.body).get('Code') if answer.body.startswith(b'{') else None\n"
        "assert (answer.status_code, code) == EXPECTED, (answer.status_code, code)\n"
    )


def test_the_first_authenticated_request_loads_the_session_modules():
    executed = _executed_after("EXPECTED = (401, 'MissingToken')\n" + _first_request("GET", "/me"))
    assert {
        "chalicelib.access.sessions",
        "chalicelib.base.models",
        "chalicelib.base.audit",
        "chalicelib.base.storage",
        "pynamodb.models",
    } <= executed
    assert not ONLY_SOME_REQUESTS & executed


def test_a_request_without_a_session_does_not_load_them():
    executed = _executed_after("EXPECTED = (200, None)\n" + _first_request("GET", "/openapi.json"))
    assert not ONLY_AUTHENTICATED_REQUESTS & executed


def test_a_deferred_module_loads_on_first_use_and_is_then_an_ordinary_module():
    executed = _executed_after(
        "import app\n"
        "from chalicelib.api import org\n"
        "org.management.check_name  # the first read of an attribute runs the module\n"
        "import chalicelib.keys.management\n"
        "assert chalicelib.keys.management is org.management\n"
        "assert sys.modules['chalicelib.keys.management'] is org.management\n"
        "from chalicelib.keys import management\n"
        "assert management.check_name is chalicelib.keys.management.check_name"
    )
    assert "chalicelib.keys.management" in executed
    # Listing, renaming and deleting keys need neither enforcement, nor registration, nor the
    # WebAuthn ceremonies and their challenges.
    assert (
        not {
            "chalicelib.org.enforcement",
            "chalicelib.keys.registration",
            "chalicelib.ceremony.ceremonies",
            "chalicelib.ceremony.challenges",
        }
        & executed
    )


def test_the_deferred_modules_of_the_settings_pages_load_with_their_first_request():
    executed = _executed_after(
        "import app\n"
        "from chalicelib.api import webhooks\n"
        "webhooks.endpoints.MAX_URL_LENGTH\n"
        "from chalicelib.api import org\n"
        "org.offboarding.MAX_SESSIONS_DELETED\n"
    )
    assert {"chalicelib.delivery.webhooks", "chalicelib.org.offboarding", "chalicelib.counters.coverage"} <= executed
    assert "chalicelib.delivery.notifications" not in executed


def test_the_deferred_modules_load_once_when_first_requests_arrive_together():
    # `chalice local` serves each request on a thread of its own: first requests that reach the
    # same deferred modules at once, from different ends, must each get the loaded module.
    executed = _executed_after(
        "import app, threading\n"
        "from chalicelib.api import http, me, org\n"
        "entries = [lambda: http.storage.unavailable_on_failure, lambda: http.sessions.resolve,\n"
        "           lambda: http.audit.Client, lambda: org.offboarding.offboard, lambda: me.grace.member_due_at,\n"
        "           lambda: org.query_values.user_id_filter, lambda: me.sessions.sessions_of,\n"
        "           lambda: org.audit.list_events]\n"
        "barrier, found, failed = threading.Barrier(len(entries)), {}, []\n"
        "def first_use(index, entry):\n"
        "    barrier.wait(timeout=30)\n"
        "    try:\n"
        "        found[index] = entry()\n"
        "    except Exception as error:\n"
        "        failed.append(repr(error))\n"
        "threads = [threading.Thread(target=first_use, args=item, daemon=True) for item in enumerate(entries)]\n"
        "for thread in threads: thread.start()\n"
        "for thread in threads: thread.join(timeout=120)\n"
        "assert not any(thread.is_alive() for thread in threads), 'a first use never finished'\n"
        "assert not failed and len(found) == len(entries), failed\n"
        "from chalicelib.access import sessions\n"
        "from chalicelib.base import storage\n"
        "assert found[0] is storage.unavailable_on_failure and found[1] is sessions.resolve\n"
    )
    assert ONLY_AUTHENTICATED_REQUESTS <= executed
