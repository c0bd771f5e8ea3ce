"""A local DynamoDB for development and tests: moto's server, run in this process."""
from __future__ import annotations

import functools
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable

from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
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

    def __call__(self, environ: dict, start_response: object) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


class AtomicMotoServer(ThreadedMotoServer):
    """moto's threaded server with DynamoDB's per-request atomicity (see :class:`_OneRequestAtATime`)."""

    def _server_entry(self) -> None:
        app = _OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


def _keep_streams_across_cancelled_transactions() -> None:
    """Make moto's cancelled transactions leave the tables' streams as DynamoDB does: untouched.

    moto applies a transaction's writes one by one and, when one is refused, puts back deep copies
    of the tables it took beforehand. The copies carry copies of the stream shards, so a stream
    reader's shard iterator — which holds the shard itself — keeps reading the discarded shard:
    it is handed the records of the writes that were rolled back, and never a record written
    after. On DynamoDB a cancelled transaction writes no stream record and a stream reader goes on.
    This keeps each table's shard across the rollback, without the rolled-back records.
    """
    original: Callable[..., Any] = DynamoDBBackend.transact_write_items
    if getattr(original, "keeps_streams", False):
        return

    @functools.wraps(original)
    def transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Any:
        shards = {}
        for item in transact_items:
            for operation in item.values() if isinstance(item, dict) else ():
                table = backend.tables.get(operation.get("TableName")) if isinstance(operation, dict) else None
                if table is not None and table.stream_shard is not None:
                    shards[table.name] = (table.stream_shard, len(table.stream_shard.items))
        try:
            return original(backend, transact_items)
        except Exception:
            for name, (shard, length) in shards.items():
                restored = backend.tables.get(name)
                if restored is not None and restored.stream_shard is not shard:
                    del shard.items[length:]
                    shard.table = restored
                    restored.stream_shard = shard
            raise

    transact_write_items.keeps_streams = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def start_moto(*, host: str = "127.0.0.1", port: int = 8001) -> ThreadedMotoServer:
    """Start moto's server on a daemon thread; ``port=0`` picks a free port (see :func:`server_endpoint`)."""
    if port:
        # ThreadedMotoServer.start() waits forever if its thread cannot bind, so find out first.
        ensure_free(host=host, port=port)
    # werkzeug logs every DynamoDB call at INFO, which would bury chalice's own output.
    werkzeug_logger = logging.getLogger("werkzeug")
    if werkzeug_logger.level == logging.NOTSET:
        werkzeug_logger.setLevel(logging.WARNING)
    _keep_streams_across_cancelled_transactions()
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

