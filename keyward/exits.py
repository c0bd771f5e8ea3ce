"""How the command-line tools (``python -m keyward``, ``python -m devstack``) end when a command
fails: one line on standard error that says what went wrong and what to do, and a non-zero exit
status, not a traceback. ``KEYWARD_DEBUG=1`` shows the traceback as well."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

DEBUG_HINT = "run with KEYWARD_DEBUG=1 for the traceback"


def run(main: Callable[[], int]) -> int:
    """``main()``'s exit status; a failure becomes one line on stderr and status 1 (130 for Ctrl-C)."""
    try:
        return main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if os.environ.get("KEYWARD_DEBUG") == "1":
            raise
        print(f"error: {explain(error)}", file=sys.stderr)
        return 1


def explain(error: BaseException) -> str:
    """One line on ``error``: what happened and, for the failures an operator meets, what to do."""
    from botocore import exceptions as aws

    from chalicelib.base.errors import ConfigurationError

    cause = _innermost(error)
    if isinstance(cause, aws.NoCredentialsError):
        return (
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or DYNAMODB_ENDPOINT for a local DynamoDB)"
        )
    if isinstance(cause, aws.NoRegionError):
        return "no AWS region: set AWS_REGION (e.g. AWS_REGION=eu-west-1)"
    if isinstance(cause, aws.EndpointConnectionError):
        where = cause.kwargs.get("endpoint_url")
        return f"could not reach {where}: check DYNAMODB_ENDPOINT or AWS_REGION and the network"
    if isinstance(cause, aws.ClientError):
        failed = cause.response.get("Error", {})
        code, message = failed.get("Code", "an error"), failed.get("Message", "")
        hint = {
            "ResourceNotFoundException": " (is the KEYWARD_*_TABLE setting or AWS_REGION right?)",
            "AccessDeniedException": " (the credentials in use may not do this)",
            "UnrecognizedClientException": " (the credentials in use are not valid)",
        }.get(code, "")
        return f"AWS refused {cause.operation_name}: {code}: {message}{hint}"
    if isinstance(cause, ConfigurationError):
        return f"configuration: {cause} (see docs/configuration.md)"
    if isinstance(cause, OSError) and cause.filename is not None:
        return f"{cause.strerror or cause}: {cause.filename}"
    return f"{type(cause).__name__}: {cause} ({DEBUG_HINT})"


def _innermost(error: BaseException) -> BaseException:
    """The botocore error inside PynamoDB's wrapping (its ``cause``), or ``error`` itself."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__module__.startswith("botocore"):
            return current
        wrapped = getattr(current, "cause", None)
        current = wrapped if isinstance(wrapped, BaseException) else (current.__cause__ or current.__context__)
    return error
