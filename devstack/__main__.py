"""``python -m devstack``: run keyward locally, mint dev ID tokens, create local tables, and act
as a software security key."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from devstack.dynamodb import (
    dynamodb_environment,
    server_endpoint,
    start_moto,
    wait_until_up,
)
from devstack.environment import DEMO_PORT, LOCAL_PORT, apply_environment, local_environment
from devstack.idp import DevIdentityProvider
from devstack.ports import ensure_free
from keyward.exits import run as run_command

if TYPE_CHECKING:
    from devstack.demo_app import DemoApp

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOST = "127.0.0.1"
MOTO_PORT = 8001
# How long chalice gets to stop after each of SIGINT and SIGTERM before the next, harsher one.
STOP_GRACE_SECONDS = 5.0


class _StopRequested(Exception):
    """SIGINT or SIGTERM arrived: wind everything down."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    token = commands.add_parser("token", help="print an ID token from the dev IdP")
    token.add_argument("--org", required=True)
    token.add_argument("--user", required=True)
    token.add_argument("--admin", action="store_true", help="put the user in the admin group")
    token.add_argument("--name")
    token.add_argument("--email")
    token.add_argument("--lifetime-seconds", type=int, default=3600)

    run = commands.add_parser("run", help="run keyward on chalice local, with DynamoDB on moto")
    run.add_argument("--port", type=int, default=LOCAL_PORT)
    run.add_argument(
        "--dynamodb-port", type=int, default=MOTO_PORT, help="moto's port, unless DYNAMODB_ENDPOINT is set"
    )
    run.add_argument(
        "--no-autoreload", dest="autoreload", action="store_false", help="don't restart chalice on file changes"
    )
    run.add_argument(
        "--demo-port",
        type=int,
        default=DEMO_PORT,
        help="the demo app's port: a relying party that signs in through keyward's OpenID provider",
    )
    run.add_argument("--no-demo-app", dest="demo_app", action="store_false", help="don't serve the demo app")

    commands.add_parser("tables", help="create missing tables at DYNAMODB_ENDPOINT")

    mds = commands.add_parser(
        "mds",
        help="load a FIDO Metadata Service BLOB into the local stack (instead of the bundled snapshot)",
        description="Verify an MDS3 BLOB's signature chain and make it the local stack's authenticator "
        "metadata; stored keys of models it reports compromised are flagged. Needs DYNAMODB_ENDPOINT "
        "(the local stack's DynamoDB, http://127.0.0.1:8001 with `make run`).",
    )
    mds.add_argument("blob", type=Path, help="the BLOB, as downloaded from https://mds3.fidoalliance.org/")
    mds.add_argument(
        "--trust-root", type=Path, help="PEM root the BLOB's chain must end at (default: the FIDO Alliance's)"
    )

    mail = commands.add_parser("mail", help="show the local outbox: the mail keyward sent through SES on moto")
    mail.add_argument(
        "--endpoint",
        default=os.environ.get("KEYWARD_AWS_ENDPOINT") or f"http://{LOCAL_HOST}:{MOTO_PORT}",
        help="where moto answers (default: $KEYWARD_AWS_ENDPOINT, else the local stack's moto)",
    )

    key = commands.add_parser(
        "key",
        help="a software security key: answer the API's WebAuthn options from stdin",
        description="A software security key for trying the API: reads the API's WebAuthn options "
        "on stdin and prints the request body to post back. Ceremonies claim the origin of $API "
        "(default http://localhost:8000).",
    )
    key_actions = key.add_subparsers(dest="action", required=True)
    register = key_actions.add_parser(
        "register", help="answer POST /me/mfa/keys/options; print the body for POST /me/mfa/keys"
    )
    register.add_argument("--name", required=True, help="the name the key gets in keyward")
    sign = key_actions.add_parser(
        "sign", help="answer POST /auth/mfa/options; print the body for POST /auth/mfa/verify"
    )
    for action in (register, sign):
        action.add_argument(
            "--key-file",
            type=Path,
            help="where the key is kept (default: $KEYWARD_DEV_KEY_FILE, else .devstack/keys/default.json)",
        )

    args = parser.parse_args(argv)
    if args.command == "token":
        print(
            DevIdentityProvider.load_or_create().mint(
                org=args.org,
                user=args.user,
                admin=args.admin,
                name=args.name,
                email=args.email,
                lifetime_seconds=args.lifetime_seconds,
            )
        )
        return 0
    if args.command == "tables":
        return _create_tables()
    if args.command == "mds":
        return _load_metadata(blob=args.blob, trust_root=args.trust_root)

    if args.command == "mail":
        from devstack.outbox import print_outbox

        return print_outbox(endpoint=args.endpoint)
    if args.command == "key":
        from devstack import key as security_key

        return security_key.main(action=args.action, name=getattr(args, "name", None), key_file=args.key_file)
    return _run(
        port=args.port,
        dynamodb_port=args.dynamodb_port,
        autoreload=args.autoreload,
        demo_port=args.demo_port if args.demo_app else None,
    )


def _create_tables() -> int:
    endpoint = os.environ.get("DYNAMODB_ENDPOINT")
    if not endpoint:
        print("DYNAMODB_ENDPOINT is not set; `python -m devstack run` makes its own tables", file=sys.stderr)
        return 2
    apply_environment(dynamodb_environment(endpoint=endpoint))
    from devstack.tables import create_missing_tables

    created = create_missing_tables()
    print(f"created: {', '.join(created)}" if created else "all tables exist")
    return 0


def _load_metadata(*, blob: Path, trust_root: Path | None) -> int:
    for given, what in ((blob, "BLOB"), (trust_root, "trust root")):
        if given is not None and not given.is_file():
            print(f"no {what} file at {given}: pass the path of an existing file", file=sys.stderr)
            return 2
    endpoint = os.environ.get("DYNAMODB_ENDPOINT") or f"http://{LOCAL_HOST}:{MOTO_PORT}"
    apply_environment(dynamodb_environment(endpoint=endpoint))
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from chalicelib.background import metadata_refresh
    from chalicelib.base.errors import MetadataRejected

    root = x509.load_pem_x509_certificate(trust_root.read_bytes()).public_bytes(Encoding.DER) if trust_root else None
    try:
        loaded = metadata_refresh.load_blob(blob=blob.read_bytes(), trust_root=root)
    except MetadataRejected as refused:
        print(f"not loaded: {refused}", file=sys.stderr)
        return 1
    print(
        f"loaded BLOB no. {loaded.blob_number}: {loaded.models} models; newly compromised: "
        f"{', '.join(loaded.newly_compromised) or 'none'}; keys flagged: {loaded.keys_flagged}"
    )
    return 0


def _run(*, port: int, dynamodb_port: int, autoreload: bool, demo_port: int | None) -> int:
    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    moto = None
    pump = None
    audit_pump = None
    chalice: subprocess.Popen[bytes] | None = None
    demo: DemoApp | None = None
    try:
        ensure_free(host=LOCAL_HOST, port=port)
        if demo_port is not None:
            ensure_free(host=LOCAL_HOST, port=demo_port)
        identity_provider = DevIdentityProvider.load_or_create()
        endpoint = os.environ.get("DYNAMODB_ENDPOINT")
        if endpoint:
            wait_until_up(endpoint)
        else:
            moto = start_moto(host=LOCAL_HOST, port=dynamodb_port)
            endpoint = server_endpoint(moto)
        apply_environment(local_environment(endpoint=endpoint, jwks_json=identity_provider.jwks_json(), port=port))

        # Only now may chalicelib.base.models be imported: it reads the endpoint at import time.
        from devstack.seed import seed_demo_org
        from devstack.tables import create_missing_tables

        created = create_missing_tables()
        seeded = seed_demo_org()
        print(
            f"DynamoDB at {endpoint}; tables created: {', '.join(created) or 'none'}; "
            f"seeded: {', '.join(seeded) or 'nothing'}"
        )
        # The OpenID provider's keys are files under .devstack/, made now, before chalice starts.
        from chalicelib.provider import signing

        current = signing.ensure_current_keys()
        print(f"OpenID provider signing keys: {', '.join(key.kid for key in current)}")

        # As on AWS, the organizations table's stream drives the stream function (within a second).
        from devstack.stream import org_stream_pump

        pump = org_stream_pump(endpoint=endpoint)
        pump.start()
        print("stream function: pumping the organizations table's stream")

        # The audit table's stream is the outbox: mail (SES) and EventBridge on moto, webhooks.
        from devstack.outbox import audit_stream_pump, prepare_channels

        try:
            prepare_channels(endpoint=os.environ["KEYWARD_AWS_ENDPOINT"])
        except Exception as error:  # a DynamoDB Local at DYNAMODB_ENDPOINT serves no SES or EventBridge
            print(
                f"devstack: mail and EventBridge are not available at {os.environ['KEYWARD_AWS_ENDPOINT']}: {error}",
                file=sys.stderr,
            )
        audit_pump = audit_stream_pump(endpoint=endpoint)
        audit_pump.start()
        print(
            "stream function: pumping the audit table's stream; "
            f"sent mail: {Path(sys.executable).name} -m devstack mail --endpoint {os.environ['KEYWARD_AWS_ENDPOINT']}"
        )

        if demo_port is not None:
            # A relying party of the demo organization, registered as an admin would register it.
            from devstack.demo_app import DemoApp, register_demo_client

            demo = DemoApp(
                api=f"http://localhost:{port}", port=demo_port, identity_provider=identity_provider, host=LOCAL_HOST
            )
            register_demo_client(redirect_uri=demo.redirect_uri)
            demo.start()

        chalice = _start_chalice(port=port, autoreload=autoreload)
        try:
            wait_until_up(f"http://{LOCAL_HOST}:{port}/", timeout_seconds=20)
        except TimeoutError:
            print("chalice local is not answering yet; see its output above", file=sys.stderr)
        _print_how_to_log_in(port=port, demo=demo)
        return chalice.wait()
    except _StopRequested:
        return 0
    except (OSError, TimeoutError) as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave chalice or moto behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if chalice is not None:
            _stop_chalice(chalice)
        if demo is not None:
            demo.stop()
        if pump is not None:
            pump.stop()
        if audit_pump is not None:
            audit_pump.stop()
        if moto is not None:
            moto.stop()


def _request_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested(signal.Signals(signum).name)


def _start_chalice(*, port: int, autoreload: bool) -> subprocess.Popen[bytes]:
    # chalice local, passing each request's real peer address on (see devstack.chalice_local).
    command = [
        sys.executable,
        "-m",
        "devstack.chalice_local",
        "local",
        "--stage",
        "local",
        "--host",
        LOCAL_HOST,
        "--port",
        str(port),
    ]
    if not autoreload:
        command.append("--no-autoreload")
    # Its own process group, so stopping reaches chalice's reloader and its worker alike.
    return subprocess.Popen(command, cwd=PROJECT_ROOT, start_new_session=True)


def _stop_chalice(chalice: subprocess.Popen[bytes]) -> None:
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(chalice.pid, stop_signal)
        except ProcessLookupError:
            return
        if _group_gone(chalice, timeout_seconds=STOP_GRACE_SECONDS):
            return


def _group_gone(chalice: subprocess.Popen[bytes], *, timeout_seconds: float) -> bool:
    # The reloader may exit while its worker lingers, so ask the group rather than the process.
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        chalice.poll()  # reaps the reloader, whose zombie would keep the group alive
        try:
            os.killpg(chalice.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _print_how_to_log_in(*, port: int, demo: DemoApp | None) -> None:
    python = Path(sys.executable)
    shown_python = os.path.relpath(python, PROJECT_ROOT) if python.is_relative_to(PROJECT_ROOT) else str(python)
    admin_token = f"{shown_python} -m devstack token --org acme --user alice --admin"
    member_token = f"{shown_python} -m devstack token --org acme --user bob"
    print(
        f"""
keyward runs at http://localhost:{port} (stage local). Demo org acme: admin alice, member bob.

ID tokens from the dev IdP (run in {PROJECT_ROOT}):
  {admin_token}
  {member_token}

Log in:
  curl -s localhost:{port}/auth/login -H 'content-type: application/json' \\
    -d "{{\\"id_token\\": \\"$({admin_token})\\"}}"
  curl -s localhost:{port}/auth/login -H 'content-type: application/json' \\
    -d "{{\\"id_token\\": \\"$({member_token})\\"}}"

{_how_to_try_the_demo(demo)}Ctrl-C stops keyward and DynamoDB.""",
        flush=True,
    )


def _how_to_try_the_demo(demo: DemoApp | None) -> str:
    if demo is None:
        return ""
    return f"""The demo app runs at {demo.url}: an app of {demo.org_id} that signs people in with keyward as
its second factor (OpenID Connect, code + PKCE). Give the member a security key in the console
first, then sign in there as that member.

"""


if __name__ == "__main__":
    sys.exit(run_command(main))
