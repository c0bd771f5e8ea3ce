"""A local DynamoDB for development and tests: moto's server, run in this process."""

from __future__ import annotations

import copy
import functools
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from moto.dynamodb import models as moto_dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from devstack.ports import ensure_free

# A local endpoint must never be reached through an HTTP proxy set in the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# moto accepts any credentials, but botocore refuses to sign without some; fixed values also
# keep DynamoDB Local (which partitions data by access key and region) on one set of tables.
FAKE_AWS_ENVIRONMENT: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def dynamodb_environment(*, endpoint: str) -> dict[str, str]:
    """The environment that points keyward's models at a local DynamoDB at ``endpoint``."""
    return {**FAKE_AWS_ENVIRONMENT, "DYNAMODB_ENDPOINT": endpoint}


class _OneRequestAtATime:
    """WSGI middleware that lets moto handle one request at a time.

    DynamoDB applies every request atomically — a conditional write or a transaction either
    happens whole or not at all, whatever else is in flight. moto checks conditions and writes
    in separate Python steps, so concurrent requests could interleave between them; serializing
    requests gives tests of races the same guarantee DynamoDB gives in production.
    """

    def __init__(self, app: DomainDispatcherApplication) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: object) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


class AtomicMotoServer(ThreadedMotoServer):
    """moto's threaded server with DynamoDB's per-request atomicity (see :class:`_OneRequestAtATime`)."""

    def _server_entry(self) -> None:
        app = _OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class _TablesNotCopied:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend while a transaction runs:
    whole tables are not copied (the items a transaction touches are, by the caller); anything
    else is, as before."""

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _item_key(table: Table, operation: dict[str, Any]) -> tuple[DynamoType, DynamoType | None] | None:
    attributes = operation.get("Key") or operation.get("Item") or {}
    if table.hash_key_attr not in attributes:
        return None
    range_value = attributes.get(table.range_key_attr) if table.range_key_attr else None
    return DynamoType(attributes[table.hash_key_attr]), DynamoType(range_value) if range_value else None


# How long DynamoDB remembers a transaction's ClientRequestToken.
_TOKEN_MEMORY_SECONDS = 600


def _apply_each_client_request_token_once() -> None:
    """Make moto apply a TransactWriteItems once per ClientRequestToken, as DynamoDB does.

    keyward sends every transaction with a token of its own, so that a retry — botocore's, after
    a read timeout — cannot meet the writes of its own first attempt: DynamoDB answers a repeated
    token within ten minutes with the first attempt's success and applies nothing again. moto
    ignores the token, so on a busy local stack a retried transaction failed on its first
    attempt's writes (a challenge it had used up itself, say).
    """
    original: Callable[..., Any] = DynamoHandler.transact_write_items
    if getattr(original, "applies_tokens_once", False):
        return
    applied: dict[str, tuple[float, Any]] = {}
    lock = threading.Lock()

    @functools.wraps(original)
    def transact_write_items(handler: DynamoHandler) -> Any:
        token = handler.body.get("ClientRequestToken")
        if not token:
            return original(handler)
        now = time.monotonic()
        with lock:
            for old in [seen for seen, (at, _) in applied.items() if now - at > _TOKEN_MEMORY_SECONDS]:
                del applied[old]
            if token in applied:
                return applied[token][1]
        result = original(handler)  # raises when the transaction is refused: nothing to remember
        with lock:
            applied[token] = (now, result)
        return result

    transact_write_items.applies_tokens_once = True  # type: ignore[attr-defined]
    DynamoHandler.transact_write_items = transact_write_items  # type: ignore[method-assign, assignment]


def _roll_back_transactions_by_item() -> None:
    """Make moto's cancelled transactions undo only their own items, and leave the tables' streams
    as DynamoDB does: untouched.

    moto applies a transaction's writes one by one and, when one is refused, puts back deep copies
    of the tables it took beforehand: every transaction copies every table it names, which makes
    each one cost the size of those tables (tens of milliseconds at a few hundred items) and a
    burst of transactions outlast keyward's read timeout. Since the server handles one request at
    a time (:class:`_OneRequestAtATime`), putting back the few items a transaction names is the
    same rollback. Those copies also carried copies of the stream shards, so a stream reader's
    shard iterator — which holds the shard itself — kept reading a discarded shard. Here the
    shards stay, without the records of the rolled-back writes: on DynamoDB a cancelled
    transaction writes no stream record and a stream reader goes on.
    """
    original: Callable[..., Any] = DynamoDBBackend.transact_write_items
    if getattr(original, "rolls_back_by_item", False):
        return

    @functools.wraps(original)
    def transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Any:
        touched: list[tuple[Table, DynamoType, DynamoType | None, Any]] = []
        shards: dict[str, tuple[Any, int]] = {}
        for item in transact_items if isinstance(transact_items, list) else ():
            for operation in item.values() if isinstance(item, dict) else ():
                name = operation.get("TableName") if isinstance(operation, dict) else None
                table = backend.tables.get(name) if isinstance(name, str) else None
                if table is None:
                    continue
                if table.stream_shard is not None:
                    shards.setdefault(table.name, (table.stream_shard, len(table.stream_shard.items)))
                # A missing or malformed key: moto refuses the transaction before writing.
                try:
                    key = _item_key(table, operation)
                    if key is None:
                        continue
                    before = copy.deepcopy(table.get_item(*key))
                except Exception:
                    continue
                touched.append((table, *key, before))
        # setattr: moto does not export the module it imports, so a typed assignment cannot name it.
        setattr(moto_dynamodb_models, "copy", _TablesNotCopied)  # noqa: B010
        try:
            return original(backend, transact_items)
        except Exception:
            for table, hash_value, range_value, before in reversed(touched):
                _put_back(table, hash_value, range_value, before)
            for shard, length in shards.values():
                del shard.items[length:]
            raise
        finally:
            setattr(moto_dynamodb_models, "copy", copy)  # noqa: B010

    transact_write_items.rolls_back_by_item = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign, assignment]


def _put_back(table: Table, hash_value: DynamoType, range_value: DynamoType | None, before: Any) -> None:
    """The item as it was before a cancelled transaction (None: there was none), with no stream record."""
    if table.range_key_attr is None:
        if before is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = before
    elif before is None:
        table.items.get(hash_value, {}).pop(range_value, None)
    else:
        table.items[hash_value][range_value] = before


def start_moto(*, host: str = "127.0.0.1", port: int = 8001) -> ThreadedMotoServer:
    """Start moto's server on a daemon thread; ``port=0`` picks a free port (see :func:`server_endpoint`)."""
    if port:
        # ThreadedMotoServer.start() waits forever if its thread cannot bind, so find out first.
        ensure_free(host=host, port=port)
    # werkzeug logs every DynamoDB call at INFO, which would bury chalice's own output.
    werkzeug_logger = logging.getLogger("werkzeug")
    if werkzeug_logger.level == logging.NOTSET:
        werkzeug_logger.setLevel(logging.WARNING)
    _roll_back_transactions_by_item()
    _apply_each_client_request_token_once()
    server = AtomicMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    wait_until_up(server_endpoint(server))
    return server


def server_endpoint(server: ThreadedMotoServer) -> str:
    """The URL at which a started moto server answers."""
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


def wait_until_up(endpoint: str, *, timeout_seconds: float = 10.0) -> None:
    """Return once something answers HTTP at ``endpoint``; raise ``TimeoutError`` if nothing does."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            with _DIRECT.open(endpoint, timeout=1):
                return
        except urllib.error.HTTPError:
            # Any HTTP answer, even an error, means the server is listening.
            return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing answers at {endpoint}: {error}") from error
            time.sleep(0.1)
