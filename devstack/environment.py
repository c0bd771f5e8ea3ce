"""The environment of the ``local`` stage, and putting it in place before keyward's models load."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from devstack.dynamodb import dynamodb_environment
from devstack.idp import DEFAULT_KEY_PATH

LOCAL_PORT = 8000
# The demo app, a relying party of keyward's OpenID provider (devstack/demo_app.py).
DEMO_PORT = 8002
PROVIDER_KEY_DIR = DEFAULT_KEY_PATH.parent / "provider-keys"

# A named profile would win over, or fail next to, the fake credentials a local DynamoDB needs.
_SHADOWING_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def local_environment(
    *, endpoint: str, jwks_json: str, port: int = LOCAL_PORT, provider_key_dir: Path = PROVIDER_KEY_DIR
) -> dict[str, str]:
    """The variables the ``local`` stage needs: DynamoDB at ``endpoint``, the dev IdP's keys, the
    origin of the API on ``port``, the dev IdP's private key for the console's demo sign-in, and
    where the OpenID provider's signing keys are kept (``.devstack/provider-keys``; tests take
    their own directory)."""
    # Issuer, audience and claim names are left to the defaults in chalicelib.base.config, so that
    # `python -m devstack token` run from a plain shell mints tokens the local app accepts.
    return {
        **dynamodb_environment(endpoint=endpoint),
        "KEYWARD_STAGE": "local",
        "KEYWARD_JWKS_JSON": jwks_json,
        # The API serves its own origin locally, so ceremonies come from wherever it listens;
        # .chalice/config.json leaves this out, as its values would override the environment.
        "KEYWARD_ALLOWED_ORIGINS": f"http://localhost:{port}",
        "KEYWARD_RP_ID": "localhost",
        "KEYWARD_RP_NAME": "keyward (local)",
        # The console's "sign in as a demo user" mints tokens with the key `devstack token` uses.
        "KEYWARD_DEV_IDP_KEY_FILE": str(DEFAULT_KEY_PATH),
        # Notification mail goes to SES on moto, audit events to an EventBridge bus there
        # (`python -m devstack mail` shows the mail).
        "KEYWARD_AWS_ENDPOINT": endpoint,
        "KEYWARD_MAIL_FROM": "keyward <notifications@keyward.localhost>",
        "KEYWARD_EVENT_BUS": "keyward-local",
        # The OpenID provider: discovery and its tokens name the local API; its keys are files.
        "KEYWARD_PROVIDER_ISSUER": f"http://localhost:{port}",
        "KEYWARD_PROVIDER_KEY_DIR": str(provider_key_dir),
    }


def apply_environment(environment: Mapping[str, str]) -> None:
    """Make ``environment`` part of this process's, for itself and the processes it starts.

    Must run before ``chalicelib.base.models`` is imported: the models read the endpoint and table
    names once, at import time.
    """
    models = sys.modules.get("chalicelib.base.models")
    endpoint = environment.get("DYNAMODB_ENDPOINT")
    if models is not None and endpoint is not None and models.Organization.Meta.host != endpoint:
        raise RuntimeError(
            "chalicelib.base.models was imported before the local environment was applied; "
            f"its tables point at {models.Organization.Meta.host!r}, not {endpoint!r}"
        )
    for name in _SHADOWING_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(environment)

    from chalicelib.base.config import settings

    settings.cache_clear()
