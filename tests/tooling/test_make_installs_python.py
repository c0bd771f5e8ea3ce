"""The Makefile's set-up on a machine without Python 3.13: `make install` (and so `make run` and
`make test`) asks .ci/install-python for one and builds the virtualenv with what it prints; where
none can be installed, it stops and names the ways to get one. The project's Makefile runs in a
copy of the project's skeleton whose .ci scripts are stubs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.local_stack import PROJECT_ROOT


def _skeleton(root: Path, *, installs: bool) -> Path:
    shutil.copy(PROJECT_ROOT / "Makefile", root / "Makefile")
    # Nothing to install: pip reads empty requirements without reaching an index.
    (root / "requirements.txt").write_text("")
    (root / "requirements-dev.txt").write_text("")
    ci = root / ".ci"
    ci.mkdir()
    (ci / "find-python").write_text("#!/bin/sh\nexit 1\n")
    printed = f'echo "{sys.executable}"' if installs else 'echo "make: no way to install it" >&2; exit 1'
    (ci / "install-python").write_text(f'#!/bin/sh\necho "$1" > "$(dirname "$0")/asked-by"\n{printed}\n')
    for script in ci.iterdir():
        script.chmod(0o755)
    return root


# Under `make test BOOTSTRAP_PYTHON=...` (as .ci/run calls it) make hands its variables down through
# MAKEFLAGS; the Makefile under test must search for Python itself, as on a machine without one.
_MAKE_INHERITANCE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "BOOTSTRAP_PYTHON")


def _make_install(root: Path) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name not in _MAKE_INHERITANCE}
    return subprocess.run(["make", "install"], cwd=root, env=environment, capture_output=True, text=True, timeout=300)


def test_without_python_313_make_installs_one_and_builds_the_virtualenv_with_it(tmp_path):
    root = _skeleton(tmp_path, installs=True)
    done = _make_install(root)
    assert done.returncode == 0, done.stderr
    assert (root / ".ci" / "asked-by").read_text().strip() == "make"
    built = subprocess.run(
        [root / ".venv" / "bin" / "python", "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
    )
    assert built.stdout.strip() == "(3, 13)"
    assert (root / ".venv" / ".installed-3.13").exists()


def test_where_none_can_be_installed_make_stops_and_names_the_ways_to_get_one(tmp_path):
    root = _skeleton(tmp_path, installs=False)
    done = _make_install(root)
    assert done.returncode != 0
    assert "Python 3.13 could not be installed" in done.stderr
    assert "uv python install 3.13" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (root / ".venv").exists()
