"""``.ci/install-system-packages`` (run by ``make test`` and ``.ci/run``): which command it runs, or
names, for what the suite lacks, as root, with sudo that needs no password, with sudo that asks
for one, without sudo, and without apt-get. The commands it may call are stubs on its PATH that
record their arguments."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.local_stack import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / ".ci" / "install-system-packages"
APT_UPDATE = "apt-get update -qq"
APT_INSTALL = "apt-get install -y -qq --no-install-recommends chromium jq"
NAMED_COMMAND = "sudo apt-get update && sudo apt-get install -y chromium jq"


@dataclass
class Machine:
    """A machine made of stub commands in a directory, the only one on the script's PATH."""

    root: Path
    uid: int = 1000
    sudo: str | None = "no password"  # or "password", or None: no sudo at all
    apt_get: bool = True
    present: tuple[str, ...] = ("curl", "make")
    chromium: bool = False

    def run(self) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        bin_dir = self.root / "bin"
        bin_dir.mkdir()
        calls = self.root / "calls"
        calls.touch()
        self._stub(bin_dir / "id", f'[ "$1" = -u ] && echo {self.uid}')
        if self.apt_get:
            self._stub(bin_dir / "apt-get", f'echo "apt-get $*" >> {calls}')
        if self.sudo is not None:
            asks = "1" if self.sudo == "password" else "0"
            self._stub(
                bin_dir / "sudo",
                f'echo "sudo $*" >> {calls}\nif [ "$1" = -n ] && [ "$2" = true ]; then exit {asks}; fi\nexec "$@"',
            )
        for command in self.present:
            self._stub(bin_dir / command, "exit 0")
        (bin_dir / "env").symlink_to("/usr/bin/env")
        chromium = self.root / "chromium"
        if self.chromium:
            self._stub(chromium, "exit 0")
        completed = subprocess.run(
            ["/bin/bash", str(SCRIPT), "make test"],
            env={"PATH": str(bin_dir), "CHROMIUM": str(chromium)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        return completed, calls.read_text().splitlines()

    @staticmethod
    def _stub(path: Path, body: str) -> None:
        path.write_text(f"#!/bin/bash\n{body}\n")
        os.chmod(path, 0o755)


def test_as_root_it_installs_what_is_missing_with_apt_get(tmp_path):
    completed, calls = Machine(tmp_path, uid=0, sudo=None).run()

    assert completed.returncode == 0, completed.stderr
    assert calls == [APT_UPDATE, APT_INSTALL]


def test_with_sudo_that_needs_no_password_it_installs_through_sudo(tmp_path):
    completed, calls = Machine(tmp_path, sudo="no password").run()

    assert completed.returncode == 0, completed.stderr
    assert calls == [
        "sudo -n true",
        f"sudo env DEBIAN_FRONTEND=noninteractive {APT_UPDATE}",
        APT_UPDATE,
        f"sudo env DEBIAN_FRONTEND=noninteractive {APT_INSTALL}",
        APT_INSTALL,
    ]


@pytest.mark.parametrize("sudo", ["password", None], ids=["sudo asks for a password", "no sudo"])
def test_where_it_may_not_install_it_stops_naming_the_command(tmp_path, sudo):
    completed, calls = Machine(tmp_path, sudo=sudo).run()

    assert completed.returncode == 1
    assert calls == (["sudo -n true"] if sudo else [])
    assert completed.stderr.startswith("make test: the test suite needs chromium, jq.")
    assert NAMED_COMMAND in completed.stderr


def test_without_apt_get_it_stops_naming_what_is_missing(tmp_path):
    completed, calls = Machine(tmp_path, uid=0, apt_get=False).run()

    assert completed.returncode == 1
    assert calls == []
    assert "needs chromium, jq, and there is no apt-get" in completed.stderr
    assert NAMED_COMMAND in completed.stderr


def test_with_everything_there_it_does_nothing(tmp_path):
    completed, calls = Machine(tmp_path, present=("curl", "jq", "make"), chromium=True, apt_get=False, sudo=None).run()

    assert (completed.returncode, completed.stderr, calls) == (0, "", [])


def test_make_test_and_ci_run_use_it():
    planned = subprocess.run(
        ["make", "--dry-run", "--always-make", "test"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()

    assert planned.index('.ci/install-system-packages "make test"') < planned.index(".venv/bin/python -m pytest -q")
    assert "\n.ci/install-system-packages .ci/run\n" in (PROJECT_ROOT / ".ci" / "run").read_text()
