"""The web console as the API serves it: the page and its static files, the API Gateway stage in
the page's base URL, and the demo sign-in (``POST /dev/id-token``) that only a stage with the dev
IdP's key configured offers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest

from chalicelib.api.console import CONSOLE_DIRECTORY
from chalicelib.base.config import load, settings
from chalicelib.base.errors import ConfigurationError
from devstack.idp import DevIdentityProvider
from tests.support.keyward_client import KeywardClient
from tests.support.local_stack import PROJECT_ROOT

STATIC_FILES = sorted(path.name for path in CONSOLE_DIRECTORY.iterdir() if path.suffix != ".html")
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def test_the_page_is_served_at_the_root_with_a_strict_content_security_policy(api):
    page = api.call("GET", "/")

    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<base href="/">' in page.body
    assert '<script type="module" src="console/app.js"></script>' in page.body
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("name", STATIC_FILES)
def test_each_static_file_is_served_with_its_content_type_and_revalidated_by_etag(api, name):
    served = api.call("GET", f"/console/{name}")

    assert served.status == 200
    assert served.headers["Content-Type"] == CONTENT_TYPES[Path(name).suffix]
    assert served.body == (CONSOLE_DIRECTORY / name).read_text(encoding="utf-8")
    unchanged = api.call("GET", f"/console/{name}", headers={"if-none-match": served.headers["ETag"]})
    assert unchanged.status == 304
    assert unchanged.body in ("", None)


@pytest.mark.parametrize("page", ["index.html", "authorize.html"])
def test_the_pages_templates_are_not_served_as_files(api, page):
    served = api.call("GET", f"/console/{page}")
    assert (served.status, served.code) == (404, "ConsoleFileNotFound")
    assert "{{" not in str(served.body)


def test_every_file_the_page_loads_is_served(api):
    page = api.call("GET", "/").body
    wanted = set(re.findall(r'(?:src|href)="(console/[^"]+)"', page))
    for name in STATIC_FILES:
        if name.endswith(".js"):
            source = (CONSOLE_DIRECTORY / name).read_text(encoding="utf-8")
            wanted |= {f"console/{imported}" for imported in re.findall(r'from "\./([^"]+)"', source)}

    assert {"console/app.js", "console/style.css", "console/api.js"} <= wanted
    missing = {path: reply.status for path in sorted(wanted) if (reply := api.call("GET", f"/{path}")).status != 200}
    assert missing == {}


# Looking an element up in the document, by ID (directly or with ui.js's `$`) or by selector.
DOCUMENT_LOOKUP = re.compile(r"\bgetElementById\(|\bdocument\.querySelector(?:All)?\(|(?<![\w$.])\$\(")


def test_each_screen_looks_up_its_elements_in_one_place():
    # A screen's elements are looked up in its *-screen.js module, and the frame around the screens
    # in ui.js; everything else is handed the elements, so a renamed ID is changed in one place.
    lookups = {
        name: [
            line.strip()
            for line in (CONSOLE_DIRECTORY / name).read_text(encoding="utf-8").splitlines()
            if DOCUMENT_LOOKUP.search(line)
        ]
        for name in STATIC_FILES
        if name.endswith(".js")
    }
    elsewhere = {
        name: found for name, found in lookups.items() if found and not name.endswith("-screen.js") and name != "ui.js"
    }

    assert elsewhere == {}
    # The rule holds something: the lookup modules do look elements up.
    assert lookups["organization-screen.js"] and lookups["personal-screen.js"] and lookups["sign-in-screen.js"]


@pytest.mark.parametrize("name", ["index.html", "nothing.js", "..%2Fapi%2Fhttp.py", "console.py"])
def test_files_outside_the_console_are_not_served(api, name):
    refused = api.call("GET", f"/console/{name}")

    assert (refused.status, refused.code) == (404, "ConsoleFileNotFound")


@pytest.mark.parametrize("path", ["/api/", "/api"])
def test_behind_api_gateway_the_page_resolves_its_files_under_the_stage(path):
    from app import app

    event = {
        "resource": "/",
        "path": "/",
        "httpMethod": "GET",
        "headers": {"accept": "text/html"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "body": None,
        "isBase64Encoded": False,
        "requestContext": {
            "resourcePath": "/",
            "httpMethod": "GET",
            "path": path,
            "stage": "api",
            "identity": {"sourceIp": "192.0.2.1"},
        },
    }
    context = SimpleNamespace(
        aws_request_id="test",
        function_name="keyward",
        memory_limit_in_mb=128,
        function_version="$LATEST",
        get_remaining_time_in_millis=lambda: 3000,
    )

    response = app(event, context)

    assert response["statusCode"] == 200
    assert '<base href="/api/">' in response["body"]


def test_without_the_dev_idp_key_the_app_has_no_demo_sign_in():
    # A fresh interpreter, as on a stage that leaves KEYWARD_DEV_IDP_KEY_FILE out (every stage but local).
    probe = """
import json
from chalice.test import Client
from app import app
with Client(app) as client:
    demo = client.http.post("/dev/id-token", headers={"content-type": "application/json"},
                            body=json.dumps({"org": "acme", "user": "alice", "admin": True}))
    page = client.http.get("/")
print(json.dumps({"routes": sorted(app.routes), "status": demo.status_code, "body": demo.body.decode(),
                  "page": page.body.decode()}))
"""
    environment = {name: value for name, value in os.environ.items() if name != "KEYWARD_DEV_IDP_KEY_FILE"}
    ran = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    found = json.loads(ran.stdout.strip().splitlines()[-1])

    assert "/dev/id-token" not in found["routes"]
    assert "/" in found["routes"]
    # Chalice's router (as API Gateway's) answers for a route that does not exist.
    assert found["status"] == 403
    assert "Missing Authentication Token" in found["body"]
    assert 'data-dev-sign-in="off"' in found["page"]


def test_the_dev_idp_key_is_off_by_default_and_refused_outside_the_local_stage():
    assert load({}).dev_idp_key_file is None
    local = {"KEYWARD_STAGE": "local", "KEYWARD_DEV_IDP_KEY_FILE": "/keys/idp.pem"}
    assert load(local).dev_idp_key_file == "/keys/idp.pem"
    with pytest.raises(ConfigurationError, match="local stage only"):
        load({**local, "KEYWARD_STAGE": "prod"})


@pytest.mark.parametrize("stage", [None, ""])
def test_a_missing_stage_is_not_the_local_stage(stage):
    environment = {"KEYWARD_DEV_IDP_KEY_FILE": "/keys/idp.pem"}
    if stage is not None:
        environment["KEYWARD_STAGE"] = stage

    assert load({}).stage is None
    with pytest.raises(ConfigurationError, match="local stage only"):
        load(environment)


def test_the_dev_idp_key_is_refused_inside_lambda_even_on_a_stage_named_local():
    with pytest.raises(ConfigurationError, match="never inside AWS Lambda"):
        load(
            {
                "KEYWARD_STAGE": "local",
                "KEYWARD_DEV_IDP_KEY_FILE": "/keys/idp.pem",
                "AWS_LAMBDA_FUNCTION_NAME": "keyward-prod-APIHandler",
            }
        )


def test_inside_lambda_the_app_does_not_start_with_the_dev_idp_key():
    # A fresh interpreter with the Lambda runtime's variable: the import of the app itself fails,
    # so no request is ever served with the dev sign-in.
    environment = {**os.environ, "KEYWARD_STAGE": "local", "AWS_LAMBDA_FUNCTION_NAME": "keyward-dev-APIHandler"}
    assert environment.get("KEYWARD_DEV_IDP_KEY_FILE"), "the test environment configures the dev IdP key"
    ran = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert ran.returncode != 0
    assert "ConfigurationError" in ran.stderr and "never inside AWS Lambda" in ran.stderr


@pytest.fixture
def local_api(idp: DevIdentityProvider) -> Iterator[KeywardClient]:
    """The API as the local stage runs it: Chalice's test client applies that stage's variables from
    .chalice/config.json to each request, and the dev IdP's key is allowed on no other stage."""
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="local", project_dir=str(PROJECT_ROOT)) as client:
        yield KeywardClient(client=client, idp=idp)


@pytest.fixture
def dev_idp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DevIdentityProvider]:
    """The dev IdP with a key of this test's own, configured as the stage's demo sign-in key."""
    key_file = tmp_path / "idp-key.pem"
    provider = DevIdentityProvider.load_or_create(key_file)
    monkeypatch.setenv("KEYWARD_DEV_IDP_KEY_FILE", str(key_file))
    settings.cache_clear()
    yield provider
    settings.cache_clear()  # before monkeypatch restores the environment, so the next read sees it


def test_the_demo_sign_in_mints_an_id_token_the_dev_idps_jwks_verifies(local_api, dev_idp):
    from app import app

    assert "/dev/id-token" in app.routes, "the test environment (devstack's local_environment) sets the dev IdP key"

    minted = local_api.call("POST", "/dev/id-token", body={"org": "acme", "user": "alice", "admin": True})

    assert minted.status == 200, minted.body
    id_token = minted.body["id_token"]
    header = jwt.get_unverified_header(id_token)
    assert header["kid"] == dev_idp.kid
    key = jwt.PyJWKSet.from_json(dev_idp.jwks_json())[header["kid"]]
    config = settings()
    claims = jwt.decode(
        id_token, key=key.key, algorithms=["RS256"], audience=config.oidc_audience, issuer=config.oidc_issuer
    )
    assert claims["sub"] == "alice"
    assert claims[config.org_claim] == "acme"
    assert claims[config.groups_claim] == [config.admin_group]
    assert 0 < claims["exp"] - claims["iat"] <= 300
    # Left out, so that a sign-in keeps the names the demo organization was seeded with.
    assert config.name_claim not in claims and config.email_claim not in claims

    member = local_api.call("POST", "/dev/id-token", body={"org": "acme", "user": "bob", "admin": False})
    assert (
        jwt.decode(
            member.body["id_token"],
            key=key.key,
            algorithms=["RS256"],
            audience=config.oidc_audience,
            issuer=config.oidc_issuer,
        )[config.groups_claim]
        == []
    )


@pytest.mark.parametrize(
    "body",
    [
        {"org": "acme", "admin": False},
        {"org": "", "user": "bob", "admin": False},
        {"org": "acme", "user": "bob", "admin": "yes"},
        {"org": "acme", "user": "x" * 129, "admin": False},
        {"org": "acme", "user": "bob", "admin": False, "groups": ["keyward-admins"]},
    ],
)
def test_the_demo_sign_in_refuses_malformed_requests(local_api, dev_idp, body):
    refused = local_api.call("POST", "/dev/id-token", body=body)

    assert (refused.status, refused.code) == (400, "MalformedRequest")
