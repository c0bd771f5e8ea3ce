"""Clients of the AWS services keyward calls besides DynamoDB (which PynamoDB talks to): KMS,
SES and EventBridge. One client per service and retry policy in a process, in the stage's
region, and on moto where the local stage says so (``KEYWARD_AWS_ENDPOINT``).

Each caller names its service with a string literal (``aws.client("kms")``): the package keeps the
models of exactly the services named so (deploy/prune.py, tests/deploy/test_prune.py).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from chalicelib.base.config import settings

# The services keyward calls; deploy/prune.py keeps exactly their models (and DynamoDB's).
Service = Literal["kms", "ses", "events"]


@functools.cache
def client(service: Service, *, attempts: int = 3, read_timeout: int = 5) -> Any:
    """The process's client of ``service``; ``attempts=1`` for callers that retry on their own
    (the outbox, which backs off and records every attempt)."""
    import boto3  # only the functions that call these services pay for it
    from botocore.config import Config

    return boto3.client(  # the factory itself: its callers name the service
        service,
        region_name=settings().region,
        endpoint_url=settings().aws_endpoint,
        config=Config(
            retries={"max_attempts": attempts, "mode": "standard"}, connect_timeout=3, read_timeout=read_timeout
        ),
    )
