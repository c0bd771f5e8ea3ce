"""The README's walk-through against ``make run`` as a newcomer starts it: chalice autoreloading.

Files appear in the project while the stack runs — the key the walk-through registers in
``.devstack/``, schemathesis's and hypothesis's databases, pytest's cache, ``make package``'s
``out/`` — and none of them may restart the server, which would cut off the requests in flight.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devstack.chalice_local import AppSourceWatcher
from tests.support.local_stack import (
    PROJECT_ROOT,
    LocalStack,
    chalice_workers,
    running_make_run,
    stack_environment,
)
from tests.support.walkthrough import run_readme_walkthrough, walked_through

# Where the project's tools write while the stack runs; none of it is the app's source.
NOT_SOURCE = (".devstack", ".hypothesis", ".schemathesis", ".pytest_cache", "out", "tests")


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_make_run(tmp_path_factory.mktemp("make-run")) as stack:
        yield stack


@pytest.fixture
def key_in_the_project() -> Iterator[Path]:
    """A key file beside the README's default (.devstack/keys/default.json), in the watched tree as
    that one is, without replacing a developer's key."""
    key_file = PROJECT_ROOT / ".devstack" / "keys" / f"walkthrough-{uuid.uuid4().hex}.json"
    yield key_file
    key_file.unlink(missing_ok=True)


def test_the_readme_walkthrough_runs_against_make_run(local_stack, key_in_the_project, tmp_path):
    workers = _serving_workers(local_stack)
    environment = {**stack_environment(), "API": local_stack.api, "KEYWARD_DEV_KEY_FILE": str(key_in_the_project)}

    walkthrough = run_readme_walkthrough(directory=tmp_path, environment=environment)
    # A restart the key file set off may still be under way when the last step ends.
    time.sleep(2 * AppSourceWatcher.POLL_INTERVAL + 0.5)

    walked_through(
        walkthrough,
        report=f"stdout:\n{walkthrough.stdout}\nstderr:\n{walkthrough.stderr}\n"
        f"make run:\n{local_stack.log.read_text()}",
    )
    assert json.loads(key_in_the_project.read_text())["sign_count"] == 1
    assert _serving_workers(local_stack) == workers, "chalice restarted during the walk-through"


def test_files_written_outside_the_app_sources_do_not_restart_it(local_stack):
    workers = _serving_workers(local_stack)

    with _files_written_into(NOT_SOURCE):
        time.sleep(2 * AppSourceWatcher.POLL_INTERVAL + 0.5)

    assert _serving_workers(local_stack) == workers, f"chalice restarted:\n{local_stack.log.read_text()}"


def _serving_workers(stack: LocalStack) -> list[int]:
    workers = chalice_workers(stack.pid)
    assert len(workers) == 1, workers
    return workers


@contextmanager
def _files_written_into(directories: tuple[str, ...]) -> Iterator[None]:
    """A new file in each directory (made if missing) for the block; all gone afterwards."""
    made: list[Path] = []
    files: list[Path] = []
    try:
        for name in directories:
            directory = PROJECT_ROOT / name
            if not directory.exists():
                directory.mkdir()
                made.append(directory)
            files.append(directory / f"written-while-serving-{uuid.uuid4().hex}")
            files[-1].write_text("not source\n")
        yield
    finally:
        for probe in files:
            probe.unlink(missing_ok=True)
        for directory in made:
            directory.rmdir()
