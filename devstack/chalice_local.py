"""``chalice local`` as the local stack runs it.

- Each request's context carries the client's real address as ``sourceIp``, as API Gateway's
  does, instead of chalice local's fixed 127.0.0.1. keyward keys rules on the source address (the
  backup login's failure limit is per key ID and source), so the local stack must tell its clients
  apart. On Linux every 127.x.y.z address is a distinct local source: a test binds 127.0.0.2 and
  127.0.0.3 to play two clients.
- The autoreloader restarts the server when the app's sources change, and only then. chalice's own
  watches every file under the project, and restarting cuts off the requests in flight: the key
  ``devstack key register`` writes into ``.devstack/`` during the README's walk-through, the
  databases schemathesis and hypothesis keep in ``.schemathesis/`` and ``.hypothesis/``, pytest's
  cache, ``make package``'s ``out/`` and ``.venv`` would each restart it (and it would walk all of
  ``.venv`` every second).

Run as ``python -m devstack.chalice_local local --stage local ...``: the arguments are chalice's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

from chalice import local
from chalice.cli import reloader
from chalice.cli.filewatch import WorkerProcess
from chalice.cli.filewatch.stat import StatFileWatcher, StatWorkerProcess

_HTTP_METHODS = ("GET", "PUT", "POST", "HEAD", "DELETE", "PATCH", "OPTIONS")

# What the served app is made of, relative to the project directory: what `chalice package` puts
# in the Lambda package (app.py, chalicelib/, vendor/), the stages' settings chalice local reads,
# and this module, which the server's worker process runs.
APP_SOURCES = ("app.py", "chalicelib", "vendor", ".chalice/config.json", "devstack/chalice_local.py")
_NOT_SOURCE_DIRECTORIES = frozenset({"__pycache__"})
_NOT_SOURCE_SUFFIXES = (".pyc",)


def pass_peer_address() -> None:
    """Make chalice local's request handler put the connection's peer address in the event."""
    handler = local.ChaliceRequestHandler
    if getattr(handler, "passes_peer_address", False):
        return
    handle = handler._generic_handle

    def handle_with_peer_address(self: local.ChaliceRequestHandler) -> None:
        # One gateway per connection, so setting it on the instance concerns this client only.
        self.local_gateway.event_converter.LOCAL_SOURCE_IP = self.client_address[0]
        handle(self)

    for method in _HTTP_METHODS:
        setattr(handler, f"do_{method}", handle_with_peer_address)
    handler.passes_peer_address = True


def app_source_files(project_dir: Path) -> Iterator[Path]:
    """The files whose change restarts the server: :data:`APP_SOURCES`, without bytecode."""
    for source in APP_SOURCES:
        path = project_dir / source
        if path.is_file():
            yield path
        elif path.is_dir():
            for directory, subdirectories, files in os.walk(path):
                subdirectories[:] = [name for name in subdirectories if name not in _NOT_SOURCE_DIRECTORIES]
                for name in files:
                    if not name.endswith(_NOT_SOURCE_SUFFIXES):
                        yield Path(directory, name)


class AppSourceWatcher(StatFileWatcher):
    """chalice's polling watcher, looking at the app's sources instead of the whole project."""

    def _seed_mtime_cache(self, root_dir: str) -> None:
        for path in self._recursive_walk_files(root_dir):
            self._mtime_cache[path] = self._osutils.mtime(path)

    def _recursive_walk_files(self, root_dir: str) -> Iterator[str]:
        return (str(path) for path in app_source_files(Path(root_dir)))


class AppSourceWorkerProcess(StatWorkerProcess):
    def _start_file_watcher(self, project_dir: str) -> None:
        AppSourceWatcher().watch_for_file_changes(project_dir, self._on_file_change)


def _app_source_worker_process() -> type[WorkerProcess]:
    return AppSourceWorkerProcess


def watch_app_sources_only() -> None:
    """Make chalice local's autoreloader use :class:`AppSourceWorkerProcess`.

    chalice picks its worker with ``reloader.get_best_worker_process()`` (watchdog's if installed,
    else the polling one), and ``chalice local`` offers no option to pass another.
    """
    reloader.get_best_worker_process = _app_source_worker_process


def main(argv: list[str]) -> int:
    from chalice.cli import cli

    pass_peer_address()
    watch_app_sources_only()
    # chalice's reloader restarts its worker with sys.argv: it must name this module, not chalice.
    sys.argv = [sys.executable, "-m", "devstack.chalice_local", *argv]
    return cli.main(args=argv, prog_name="chalice", obj={})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
