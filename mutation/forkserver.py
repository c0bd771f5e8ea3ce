"""Run a mutant's tests in a process forked from one that has already done the start-up.

A mutant's tests spend most of their time before the first test: importing moto, boto3,
PynamoDB, chalice and py_webauthn, starting moto and creating every table (about 7 s a mutant on
the development machine, against a second or two of tests). The server does that once per
module, stops serving moto, and then forks one child per mutant: the child serves moto's state
again (``tests/support/process_stack.py``), imports keyward — the mutated module as cosmic-ray just wrote
it — and runs pytest. Nothing of keyward is imported before the fork except the models and the
configuration, so every mutant is tested from its own source.

    python -m mutation.forkserver serve SOCKET MODULE_PATH      # in the tree being mutated
    python -m mutation.forkserver run SOCKET TIMEOUT [--lines MAP ORIGINAL] -- PYTEST_ARGS... TEST_FILES...

With ``--lines``, a mutant runs only the tests that execute the lines it changed (MAP, written
by ``mutation/run.py`` from a coverage run of the unmutated module; ORIGINAL, that module's
source). A test that never executes a line cannot tell its mutants apart, so leaving it out
changes no outcome; a line that runs when the module is imported is run by every test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

# A test run that outlives its timeout is killed, and counts as failed (the mutant as killed).
_TIMED_OUT = 124


def serve(socket_path: str, module_path: str) -> None:
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    sys.path.insert(0, os.getcwd())
    _start_up(module_path)
    starting = socket_path + ".starting"
    for stale in (socket_path, starting):
        if os.path.exists(stale):
            os.unlink(stale)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(starting)
        listener.listen(1)
        os.rename(starting, socket_path)  # the socket's path appears only once it accepts
        print(f"forkserver: ready for {module_path}", flush=True)
        while True:
            connection, _ = listener.accept()
            with connection:
                request = json.loads(_receive(connection))
                if request.get("stop"):
                    return
                status = _run_child(
                    request["args"],
                    output=request["output"],
                    timeout=float(request["timeout"]),
                    module_path=module_path,
                )
                connection.sendall(json.dumps({"status": status}).encode())


def _start_up(module_path: str) -> None:
    """Everything a test run needs that a mutant cannot change."""
    import boto3  # noqa: F401
    import cbor2  # noqa: F401
    import chalice.test  # noqa: F401
    import fido2.webauthn  # noqa: F401
    import jwt  # noqa: F401
    import pytest  # noqa: F401
    import webauthn  # noqa: F401

    from tests.support import process_stack

    process_stack.prepared()
    process_stack.stop_serving()
    mutated = _module_name(module_path)
    loaded = sorted(name for name in sys.modules if name.startswith(("chalicelib", "app", "tests.")))
    # The child must import the mutated module from disk, and with it everything that uses it.
    if mutated in sys.modules:
        raise SystemExit(f"forkserver: {mutated} was imported before the fork (loaded: {', '.join(loaded)})")


def _run_child(args: list[str], *, output: str, timeout: float, module_path: str) -> int:
    _forget_bytecode(module_path)
    child = os.fork()
    if child == 0:
        try:
            sys.dont_write_bytecode = True  # a mutant's bytecode must never serve the next mutant
            descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(descriptor, 1)
            os.dup2(descriptor, 2)
            import pytest

            status = int(pytest.main(args))
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # the child must never return into the server's loop
            import traceback

            traceback.print_exc()
            status = 1
        os._exit(status)
    deadline = time.monotonic() + timeout
    while True:
        pid, wait_status = os.waitpid(child, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(wait_status) if os.WIFEXITED(wait_status) else 1
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            return _TIMED_OUT
        time.sleep(0.05)


def _forget_bytecode(module_path: str) -> None:
    source = Path(module_path)
    for cached in (source.parent / "__pycache__").glob(f"{source.stem}.*.pyc"):
        cached.unlink(missing_ok=True)


def _module_name(module_path: str) -> str:
    return str(Path(module_path).with_suffix("")).replace(os.sep, ".")


def _receive(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)


def _ask(socket_path: str, request: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(socket_path)
        connection.sendall(json.dumps(request).encode() + b"\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return json.loads(answer) if answer else {}


def tests_for_mutant(*, lines_map: Path, original: Path, module_path: str, test_files: list[str]) -> list[str] | None:
    """The tests that execute a line the mutant changed, in collection order; ``None`` for every
    test (a changed line runs when the module is imported); ``[]`` when no test executes one."""
    import difflib

    source = original.read_text()
    before = source.splitlines()
    after = Path(module_path).read_text().splitlines()
    changed: set[int] = set()
    for tag, start, end, _, _ in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if tag != "equal":
            changed.update(range(start + 1, max(end, start + 1) + 1))
    if not changed <= _lines_run_by_calls(source):
        return None
    coverage_map = json.loads(lines_map.read_text())
    tests = {test for line in changed for test in coverage_map["lines"].get(str(line), [])}
    collected = {test: index for index, test in enumerate(coverage_map["collected"])}
    return sorted(tests, key=lambda test: collected.get(test, len(collected)))


def _lines_run_by_calls(source: str) -> set[int]:
    """The lines of function bodies. Every other line (imports, constants, signatures with their
    defaults, decorators, class bodies) runs once, when the module is first imported — under
    ``deferred`` that is inside whichever test touches the module first, so coverage cannot say
    which tests depend on it."""
    import ast

    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines.update(range(node.body[0].lineno, node.end_lineno + 1))
    return lines


def run(socket_path: str, timeout: float, args: list[str]) -> int:
    with tempfile.NamedTemporaryFile(prefix="mutant-", suffix=".log", delete=False) as log:
        output = log.name
    try:
        status = _ask(socket_path, {"args": args, "output": output, "timeout": timeout})["status"]
        sys.stdout.write(Path(output).read_text(errors="replace"))
    finally:
        os.unlink(output)
    return status


def stop(socket_path: str) -> None:
    _ask(socket_path, {"stop": True})


def main() -> None:
    command, socket_path, *rest = sys.argv[1:]
    if command == "serve":
        serve(socket_path, rest[0])
    elif command == "run":
        timeout, *rest = rest
        selection = None
        if rest[0] == "--lines":
            _, lines_map, original, module_path, *rest = rest
            selection = (Path(lines_map), Path(original), module_path)
        separator, *args = rest
        assert separator == "--", "usage: run SOCKET TIMEOUT [--lines MAP ORIGINAL MODULE] -- PYTEST_ARGS..."
        if selection is not None:
            options = [arg for arg in args if not arg.endswith(".py")]
            test_files = [arg for arg in args if arg.endswith(".py")]
            tests = tests_for_mutant(
                lines_map=selection[0], original=selection[1], module_path=selection[2], test_files=test_files
            )
            if tests == []:
                print("no test executes the lines this mutant changed")
                sys.exit(0)
            args = options + (test_files if tests is None else tests)
        sys.exit(run(socket_path, float(timeout), args))
    elif command == "stop":
        stop(socket_path)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
