"""The local stack every bench measurement runs against, started once per process.

keyward's models read the DynamoDB endpoint when first imported, and PynamoDB keeps the botocore
client it creates first: so one moto server, one environment and one request counter serve the
whole ``python -m bench`` run. The counter is registered before any botocore session exists
(see :mod:`bench.roundtrips`), and each measurement takes the difference of two snapshots.
"""

from __future__ import annotations

import functools
import importlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from botocore import handlers

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

    from devstack.idp import DevIdentityProvider


class RequestCounter:
    """A botocore ``before-send.dynamodb`` handler counting requests by DynamoDB API operation.

    Thread-safe: keyward sends BatchWriteItem requests from several threads at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._recorded: list[tuple[str, dict[str, Any]]] | None = None

    def __call__(self, event_name: str, request: Any = None, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self._calls[operation] += 1
            if self._recorded is not None and request is not None:
                self._recorded.append((operation, json.loads(request.body or b"{}")))

    @contextmanager
    def recording(self) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """The requests sent in the block, as (operation, parsed body), to see what each one read."""
        recorded: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            self._recorded = recorded
        try:
            yield recorded
        finally:
            with self._lock:
                self._recorded = None

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._calls)

    def since(self, snapshot: Counter[str]) -> Counter[str]:
        """The requests sent after ``snapshot`` was taken."""
        return self.snapshot() - snapshot


MOTO_READ_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class LocalStack:
    server: ThreadedMotoServer
    endpoint: str
    idp: DevIdentityProvider
    counter: RequestCounter


@functools.cache
def local_stack() -> LocalStack:
    """Count requests, start moto, apply the local stage's environment and create the tables,
    as tests/conftest.py does. moto runs on a daemon thread until the process ends."""
    from devstack.dynamodb import server_endpoint, start_moto
    from devstack.environment import apply_environment, local_environment
    from devstack.idp import DevIdentityProvider

    counter = RequestCounter()
    # Every botocore session registers BUILTIN_HANDLERS when it is created, so this must come
    # before the first connection; it stays for the life of the process.
    handlers.BUILTIN_HANDLERS.append(("before-send.dynamodb", counter))
    server = start_moto(port=0)
    endpoint = server_endpoint(server)
    idp = DevIdentityProvider.ephemeral()
    # The models read the endpoint when first imported: environment first, then models.
    apply_environment(local_environment(endpoint=endpoint, jwks_json=idp.jwks_json()))
    from devstack.tables import create_missing_tables

    Session = tree_models().Session

    # moto sorts a partition's items on every Query page, in Python: on a partition of 100,000
    # sessions one page takes over 10 s, where DynamoDB's cost for a page does not grow with the
    # partition. keyward's 5 s read timeout is meant for DynamoDB; here it would turn moto's
    # slowness into retries and failures.
    # It must be set before PynamoDB creates the sessions table's connection.
    Session.Meta.read_timeout_seconds = MOTO_READ_TIMEOUT_SECONDS
    create_missing_tables()
    return LocalStack(server=server, endpoint=endpoint, idp=idp, counter=counter)


def tree_models() -> ModuleType:
    """The measured tree's PynamoDB models."""
    return _in_either_layout("chalicelib.base.models", older="chalicelib.models")


def test_support(name: str) -> ModuleType:
    """A module of the measured tree's test support (its software authenticator, its API client)."""
    return _in_either_layout(f"tests.support.{name}", older=f"tests.{name}")


def _in_either_layout(current: str, *, older: str) -> ModuleType:
    """The module ``current`` names, or ``older`` in a tree from before the domain packages and
    tests by layer: the bench measures older commits too. Only a missing ``current`` itself (or a
    package of it) falls back; a module that fails inside stays a failure."""
    try:
        return importlib.import_module(current)
    except ModuleNotFoundError as missing:
        if missing.name is None or not current.startswith(missing.name):
            raise
        return importlib.import_module(older)
