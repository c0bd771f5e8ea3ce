"""What restarts ``make run``'s chalice: the app's sources changing, and nothing else under the
project (devstack.chalice_local)."""

from __future__ import annotations

from pathlib import Path

from devstack.chalice_local import AppSourceWatcher, app_source_files

SOURCES = ("app.py", "chalicelib/api/http.py", "chalicelib/console/static/console.js", "vendor/lib.py")
SOURCES += (".chalice/config.json", "devstack/chalice_local.py")
NOT_SOURCES = (
    "chalicelib/__pycache__/errors.cpython-313.pyc",
    "chalicelib/api/stale.pyc",
    ".chalice/deployments/prod.json",
    ".chalice/policy-api.json",
    ".devstack/keys/default.json",
    ".devstack/provider-keys/rs256-1.pem",
    ".hypothesis/examples/1/2",
    ".schemathesis/cache",
    ".pytest_cache/v/cache/nodeids",
    ".venv/lib/python3.13/site-packages/chalice/app.py",
    ".git/index",
    "out/keyward.zip",
    "devstack/key.py",
    "tests/stack/test_make_run.py",
    "docs/api.md",
    "README.md",
)


def _project(root: Path) -> Path:
    for name in SOURCES + NOT_SOURCES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x\n")
    return root


def test_only_the_app_sources_are_watched(tmp_path):
    project = _project(tmp_path)

    assert sorted(app_source_files(project)) == sorted(project / name for name in SOURCES)


def test_a_file_outside_the_sources_does_not_restart_the_server(tmp_path):
    project = _project(tmp_path)
    restarts: list[str] = []
    watcher = AppSourceWatcher()
    # One poll at a time, as the watcher's thread makes them every POLL_INTERVAL seconds.
    watcher._seed_mtime_cache(str(project))

    for name in (".devstack/keys/walkthrough.json", ".hypothesis/examples/3/4", ".schemathesis/new", "out/t.json"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("new\n")
    watcher._single_pass_poll(str(project), lambda: restarts.append("restart"))
    assert restarts == []

    (project / "chalicelib" / "api" / "new_handler.py").write_text("new\n")
    watcher._single_pass_poll(str(project), lambda: restarts.append("restart"))
    assert restarts == ["restart"]
