"""The test process's stack: moto's DynamoDB (with SES and EventBridge) in this process, the local
stage's environment, a dev IdP, and every table and channel keyward needs.

It is prepared once per process. A process forked from a prepared one inherits moto's state,
tables included, but not the thread that served it: :func:`prepared` serves that state again on
the same port, where the environment and keyward's models already point. ``make mutate`` relies
on this (``mutation/forkserver.py``) so that no mutant pays for the set-up again.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from moto.server import ThreadedMotoServer

from devstack.dynamodb import server_endpoint, start_moto
from devstack.environment import apply_environment, local_environment
from devstack.idp import DevIdentityProvider


@dataclass(frozen=True)
class ProcessStack:
    server: ThreadedMotoServer
    endpoint: str
    port: int
    idp: DevIdentityProvider
    pid: int  # the process whose thread serves ``server``


_stack: ProcessStack | None = None


def prepared() -> ProcessStack:
    """This process's stack, prepared or served again as need be."""
    global _stack
    if _stack is None:
        _stack = _prepare()
    elif _stack.pid != os.getpid():
        _stack = _serve_again(_stack)
    return _stack


def forget_stream_records() -> None:
    """Drop the streams' records of earlier tests (each test's pumps start at the stream's end).

    moto keeps every stream record in memory, and the audit table's stream would otherwise grow
    over the whole session.
    """
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    for table in dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables.values():
        if table.stream_shard is not None:
            table.stream_shard.items.clear()


def stop_serving() -> None:
    """Stop moto's thread and drop every connection to it, keeping moto's state: what a process
    does before it forks children that call :func:`prepared` (each serves the state again)."""
    from chalicelib.base.models import ALL_MODELS, connection

    assert _stack is not None, "nothing is prepared"
    _stack.server.stop()
    _stack.server._server.server_close()  # stop() leaves the socket listening; the children need the port
    # PynamoDB keeps one connection per model and one for transactions; a child must not reuse
    # the parent's sockets to a server that is gone.
    for model in ALL_MODELS:
        model._connection = None
    connection.cache_clear()


def _prepare() -> ProcessStack:
    server = start_moto(port=0)
    endpoint = server_endpoint(server)
    idp = DevIdentityProvider.ephemeral()
    # The provider's signing keys are files of this process, not the repository's .devstack.
    provider_key_dir = Path(tempfile.mkdtemp(prefix="keyward-provider-keys-"))
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(provider_key_dir, ignore_errors=True))
    apply_environment(
        local_environment(endpoint=endpoint, jwks_json=idp.jwks_json(), provider_key_dir=provider_key_dir)
    )
    # Only now: keyward's models read the endpoint and table names when they are first imported.
    from devstack.outbox import prepare_channels
    from devstack.tables import create_missing_tables

    create_missing_tables()
    prepare_channels(endpoint=endpoint)
    return ProcessStack(server=server, endpoint=endpoint, port=server.get_host_and_port()[1], idp=idp, pid=os.getpid())


def _serve_again(inherited: ProcessStack) -> ProcessStack:
    server = start_moto(port=inherited.port)
    return ProcessStack(
        server=server, endpoint=inherited.endpoint, port=inherited.port, idp=inherited.idp, pid=os.getpid()
    )
