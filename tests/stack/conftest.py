"""The fixtures of the tests that play requests over HTTP against a running local stack
(``python -m devstack run``): one stack per test module, a client, its tables, and the stack's
log during each test, printed so that pytest shows it with a failure.

A module whose stack needs settings of its own defines ``local_stack`` itself; the other fixtures
then use that stack.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.local_stack import LocalStack, running_local_stack
from tests.support.stack_client import StackClient, StackTables, new_client


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
    """The stack's log during the test: pytest shows it with a failure (the stack's errors are not
    in this process's output)."""
    offset = local_stack.log.stat().st_size
    yield
    with local_stack.log.open("rb") as log:
        log.seek(offset)
        print(f"--- devstack log during the test ---\n{log.read().decode(errors='replace')}")
