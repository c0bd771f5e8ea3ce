"""``python -m devstack key``: a software security key for trying the API from a shell, answering
its WebAuthn options with a real ES256 credential kept in a key file."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.support.authenticator import (
    COSE_ALG,
    AuthenticatorError,
    SoftwareAuthenticator,
    b64url_decode,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_KEY_FILE = PROJECT_ROOT / ".devstack" / "keys" / "default.json"
# Lets tests (or a second terminal) use a key file of their own without touching the default.
KEY_FILE_VARIABLE = "KEYWARD_DEV_KEY_FILE"
# The README's walk-through names the API by this variable; the origin a browser would report
# is the API's own, since keyward's local stage serves no separate frontend.
API_VARIABLE = "API"
DEFAULT_API = "http://localhost:8000"

Action = Literal["register", "sign"]


class KeyToolError(Exception):
    """Something the person at the shell must fix: the input, the key file or the environment."""


def main(
    *,
    action: Action,
    name: str | None = None,
    key_file: Path | None = None,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
) -> int:
    """Run ``key register`` or ``key sign``: options on ``stdin``, the request body on ``stdout``.

    Problems go to stderr with exit status 2, so a shell pipeline stops instead of posting junk.
    """
    try:
        path = key_file if key_file is not None else key_file_from_environment()
        origin = api_origin()
        if action == "register":
            if name is None:
                raise KeyToolError("a key needs a name: --name NAME")
            body = register(
                reply=_read_reply(stdin, endpoint="POST /me/mfa/keys/options"), name=name, key_file=path, origin=origin
            )
        else:
            body = sign(reply=_read_reply(stdin, endpoint="POST /auth/mfa/options"), key_file=path, origin=origin)
    except KeyToolError as error:
        print(f"devstack key {action}: {error}", file=sys.stderr)
        return 2
    print(json.dumps(body), file=stdout, flush=True)
    return 0


def key_file_from_environment() -> Path:
    """Where the key lives: ``$KEYWARD_DEV_KEY_FILE``, else ``.devstack/keys/default.json``."""
    configured = os.environ.get(KEY_FILE_VARIABLE)
    return Path(configured) if configured else DEFAULT_KEY_FILE


def api_origin() -> str:
    """The origin ceremonies claim to come from: that of ``$API``, else ``http://localhost:8000``."""
    api = os.environ.get(API_VARIABLE) or DEFAULT_API
    parts = urlsplit(api)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise KeyToolError(f"${API_VARIABLE} must be a URL such as {DEFAULT_API}, not {api!r}")
    return f"{parts.scheme}://{parts.netloc}"


def register(*, reply: dict[str, Any], name: str, key_file: Path, origin: str) -> dict[str, Any]:
    """Create a credential for the creation options in ``reply`` and keep it in ``key_file``.

    Returns the body for ``POST /me/mfa/keys``.
    """
    options = _options(reply, endpoint="POST /me/mfa/keys/options", creation=True)
    # A new credential every time, as if another security key were plugged in: the API may list
    # the previous one in excludeCredentials, which a real key would refuse to register again.
    authenticator = SoftwareAuthenticator(algorithm="ES256")
    try:
        credential = authenticator.register(options, origin=origin)
    except AuthenticatorError as error:
        raise KeyToolError(str(error)) from None
    if key_file.exists():
        print(f"devstack key register: replacing the key in {key_file}", file=sys.stderr)
    save_key(authenticator=authenticator, key_file=key_file)
    return {"challenge_id": reply["challenge_id"], "name": name, "credential": credential}


def sign(*, reply: dict[str, Any], key_file: Path, origin: str) -> dict[str, Any]:
    """Answer the request options in ``reply`` with the key in ``key_file``, counting the use.

    Returns the body for ``POST /auth/mfa/verify``.
    """
    options = _options(reply, endpoint="POST /auth/mfa/options", creation=False)
    authenticator = load_key(key_file=key_file)
    try:
        credential = authenticator.authenticate(options, origin=origin)
    except AuthenticatorError:
        raise KeyToolError(
            f"the key in {key_file} is not one of the keys the API asks for (allowCredentials); "
            "register it first with `python -m devstack key register`"
        ) from None
    # Saved before the body is printed: the API refuses a counter that does not move forward.
    save_key(authenticator=authenticator, key_file=key_file)
    return {"challenge_id": reply["challenge_id"], "credential": credential}


def save_key(*, authenticator: SoftwareAuthenticator, key_file: Path) -> None:
    """Write the credential to ``key_file`` (0600, in a 0700 directory), replacing it whole."""
    pem = authenticator.private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    stored = {
        "algorithm": authenticator.algorithm,
        "credential_id": authenticator.credential_id_b64,
        "sign_count": authenticator.sign_count,
        "private_key": pem.decode(),
    }
    _make_private_directory(key_file.parent)
    # mkstemp creates the file 0600; renaming it into place never leaves half a key behind.
    descriptor, temporary = tempfile.mkstemp(dir=key_file.parent, prefix=f".{key_file.name}-")
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump(stored, file, indent=2)
            file.write("\n")
        os.replace(temporary, key_file)
    except BaseException:
        os.unlink(temporary)
        raise


def load_key(*, key_file: Path) -> SoftwareAuthenticator:
    """The credential kept in ``key_file``, ready to sign."""
    try:
        stored = json.loads(key_file.read_text())
    except FileNotFoundError:
        raise KeyToolError(
            f"no key at {key_file}; register one first with `python -m devstack key register --name NAME`"
        ) from None
    except (OSError, ValueError) as error:
        raise KeyToolError(f"cannot read the key in {key_file}: {error}") from None
    try:
        algorithm = stored["algorithm"]
        if algorithm not in COSE_ALG:
            raise ValueError(f"unsupported algorithm {algorithm!r}")
        private_key = serialization.load_pem_private_key(stored["private_key"].encode(), password=None)
        expected_type = ec.EllipticCurvePrivateKey if algorithm == "ES256" else ed25519.Ed25519PrivateKey
        if not isinstance(private_key, expected_type):
            raise ValueError(f"the private key is not an {algorithm} key")
        sign_count = stored["sign_count"]
        if not isinstance(sign_count, int) or sign_count < 0:
            raise ValueError("sign_count must be a non-negative integer")
        authenticator = SoftwareAuthenticator(
            algorithm=algorithm, credential_id=b64url_decode(stored["credential_id"]), sign_count=sign_count
        )
    except (KeyError, TypeError, ValueError) as error:
        raise KeyToolError(f"{key_file} does not hold a devstack key: {error}") from None
    authenticator.private_key = private_key
    return authenticator


def _read_reply(stdin: TextIO, *, endpoint: str) -> dict[str, Any]:
    # A terminal on stdin would just hang waiting for input nobody knows to type.
    if stdin.isatty():
        raise KeyToolError(f"pipe the API's reply to {endpoint} into this command")
    text = stdin.read()
    if not text.strip():
        # `curl -f` prints nothing when the API refuses, so say where to look.
        raise KeyToolError(f"nothing on stdin; expected the API's reply to {endpoint} (did the request fail?)")
    try:
        reply = json.loads(text)
    except ValueError:
        raise KeyToolError(
            f"stdin is not JSON; expected the API's reply to {endpoint}, got: {_excerpt(text)}"
        ) from None
    if not isinstance(reply, dict):
        raise KeyToolError(f"expected a JSON object from {endpoint}, got: {_excerpt(text)}")
    if "Code" in reply:
        raise KeyToolError(f"the API refused {endpoint}: {reply.get('Code')}: {reply.get('Message', '')}")
    return reply


def _options(reply: dict[str, Any], *, endpoint: str, creation: bool) -> dict[str, Any]:
    options = reply.get("publicKey")
    if (
        not isinstance(reply.get("challenge_id"), str)
        or not isinstance(options, dict)
        or not isinstance(options.get("challenge"), str)
    ):
        raise KeyToolError(
            f'expected {endpoint}\'s reply, {{"challenge_id": ..., "publicKey": {{...}}}}; '
            f"got: {_excerpt(json.dumps(reply))}"
        )
    # Creation options name the user; request options never do. Mixing them up would only earn
    # an opaque refusal from the API later.
    if creation and "user" not in options:
        raise KeyToolError(
            "these are sign-in options (POST /auth/mfa/options); answer them with `python -m devstack key sign`"
        )
    if not creation and "user" in options:
        raise KeyToolError(
            "these are registration options (POST /me/mfa/keys/options); "
            "answer them with `python -m devstack key register --name NAME`"
        )
    return options


def _make_private_directory(directory: Path) -> None:
    # Unlike mkdir -p, every directory created here is 0700: the keys are private keys.
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


def _excerpt(text: str, *, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"
