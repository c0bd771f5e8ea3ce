"""The fixtures of the tests that play requests over HTTP against a running local stack
(``python -m devstack run``): one stack per test module, a client, its tables, and its log.

A module takes them by importing them, so that pytest finds them in its namespace and the stack
lives as long as the module's tests::

    from tests.support.stack_fixtures import db, keyward, local_stack, stack_log  # noqa: F401

A module whose stack needs settings of its own defines ``local_stack`` itself, after the import.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.local_stack import LocalStack, running_local_stack
from tests.support.stack_client import StackClient, StackTables, new_client, stack_log_fixture


@pytest.fixture(scope="module")
def local_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_local_stack(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])) as stack:
        yield stack


@pytest.fixture(scope="module")
def keyward(local_stack: LocalStack) -> StackClient:
    return new_client(local_stack)


@pytest.fixture(scope="module")
def db(local_stack: LocalStack) -> StackTables:
    return StackTables(local_stack)


@pytest.fixture(autouse=True)
def stack_log(local_stack: LocalStack) -> Iterator[None]:
    yield from stack_log_fixture(local_stack)
