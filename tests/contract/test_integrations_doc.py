"""docs/integrations.md against the API it describes: every keyward path it tells an identity
engineer to enter (the OpenID provider's endpoints, the relying-party settings) is a route of the
OpenAPI document, and every endpoint keyward's discovery document names is in the guide."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from chalicelib.api.openapi import DOCUMENT_PATH
from tests.support.local_stack import PROJECT_ROOT

GUIDE = PROJECT_ROOT / "docs" / "integrations.md"
# keyward's own paths in the guide; other products' paths (Okta's callback, Keycloak's broker
# endpoint, Entra's reply URL) start otherwise.
KEYWARD_PATH = re.compile(r"/(?:oidc/[a-z]+|\.well-known/openid-configuration|org/oidc-clients[\w{}/]*)")
ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri", "introspection_endpoint")


def _paths_in_the_guide() -> set[str]:
    return {path.rstrip("/") for path in KEYWARD_PATH.findall(GUIDE.read_text(encoding="utf-8"))}


def test_every_keyward_path_in_the_guide_is_a_route_of_the_api():
    routes = set(json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))["paths"])
    mentioned = _paths_in_the_guide()

    assert {"/.well-known/openid-configuration", "/oidc/authorize", "/org/oidc-clients"} <= mentioned
    assert mentioned - routes == set(), "docs/integrations.md names paths the API does not have"


def test_the_guide_names_every_endpoint_of_the_discovery_document(api):
    discovery = api.client.http.get("/.well-known/openid-configuration")
    assert discovery.status_code == 200
    metadata = json.loads(discovery.body)

    named = {name: urlsplit(metadata[name]).path for name in ENDPOINTS if name in metadata}

    assert "authorization_endpoint" in named and "token_endpoint" in named and "jwks_uri" in named
    assert set(named.values()) <= _paths_in_the_guide(), named
