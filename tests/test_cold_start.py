"""What a cold start loads: the modules every request needs, and not those only some requests
need (chalicelib/deferred.py), which load on the first request that uses them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
# Each of these serves only some requests: the stream function, sign-in, MFA, key management,
# backup credentials, the member list, the WebAuthn ceremonies, webhook settings, the local
# outbox, the member counters (joining and leaving) and the paged lists.
ONLY_SOME_REQUESTS = {
    "chalicelib.enforcement", "chalicelib.identity", "chalicelib.mfa", "chalicelib.keys", "chalicelib.challenges",
    "chalicelib.backup", "chalicelib.members", "chalicelib.ceremonies", "webauthn",
    "chalicelib.webhooks", "chalicelib.notifications", "chalicelib.coverage", "chalicelib.pagination",
}


def _executed_after(statements: str) -> set[str]:
    """The modules a fresh interpreter has executed after ``statements``: a deferred module is in
    sys.modules from the start, but its type is ModuleType only once it has run."""
    from devstack.environment import local_environment
    from devstack.idp import DevIdentityProvider

    environment = {**os.environ, **local_environment(endpoint="http://127.0.0.1:9",
                                                     jwks_json=DevIdentityProvider.ephemeral().jwks_json())}
    probe = (f"import sys, types, json\n{statements}\n"
             "print(json.dumps([n for n, m in list(sys.modules.items()) if type(m) is types.ModuleType]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT, env=environment, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def test_a_cold_start_loads_only_what_every_request_needs():
    executed = _executed_after("import app")
    assert {"app", "chalicelib.sessions", "chalicelib.models", "chalicelib.api.http"} <= executed
    assert not ONLY_SOME_REQUESTS & executed


def test_a_deferred_module_loads_on_first_use_and_is_then_an_ordinary_module():
    executed = _executed_after(
        "import app\n"
        "from chalicelib.api import org\n"
        "org.keys.check_name  # the first read of an attribute runs the module\n"
        "import chalicelib.keys\n"
        "assert chalicelib.keys is org.keys and sys.modules['chalicelib.keys'] is org.keys\n"
        "from chalicelib import keys\n"
        "assert keys.check_name is chalicelib.keys.check_name"
    )
    assert {"chalicelib.keys", "chalicelib.challenges"} <= executed
    assert "chalicelib.enforcement" not in executed


def test_the_deferred_modules_of_the_settings_pages_load_with_their_first_request():
    executed = _executed_after(
        "import app\n"
        "from chalicelib.api import webhooks\n"
        "webhooks.endpoints.MAX_URL_LENGTH\n"
        "from chalicelib import membership\n"
        "membership.coverage.Bucket.NONE\n"
    )
    assert {"chalicelib.webhooks", "chalicelib.coverage"} <= executed
    assert "chalicelib.notifications" not in executed
