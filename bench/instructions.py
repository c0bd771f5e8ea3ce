"""Instructions a cold import executes, counted by valgrind's callgrind: a figure the machine's load
does not move, unlike wall and CPU time.

One process per statement, with cached bytecode (a run before it fills a private cache, as in
:mod:`bench.imports`) and a fixed hash seed, so that a repeated run counts within a fraction of a
percent of the first. Under callgrind a process runs some fifty times slower: each ``import app``
takes a minute or more.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.baseline import Tree, last_line
from bench.imports import APP, BARE, BASELINE, OLD_APP, ROOT, _environment

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


@dataclass(frozen=True)
class Instructions:
    # Instructions per statement (OLD_APP: the baseline tree's `import app`), or why there is no count.
    counts: dict[str, int | str]
    old_tree: Tree | None

    def ratio(self, app: str = APP) -> float | None:
        """The app's count over `import chalice, pynamodb.models`'s, whole processes."""
        app_count, baseline = self.counts.get(app), self.counts.get(BASELINE)
        if not isinstance(app_count, int) or not isinstance(baseline, int):
            return None
        return app_count / baseline


def measure_instructions(*, old: Tree | None = None) -> Instructions:
    rows: dict[str, tuple[str, Path]] = {BARE: (BARE, ROOT), BASELINE: (BASELINE, ROOT), APP: (APP, ROOT)}
    if old is not None:
        rows[OLD_APP] = (APP, old.root)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return Instructions(counts={label: "valgrind is not installed" for label in rows}, old_tree=old)
    counts: dict[str, int | str] = {}
    with tempfile.TemporaryDirectory(prefix="keyward-bench-pyc-") as bytecode_cache:
        environment = {**_environment(bytecode_cache), "PYTHONHASHSEED": "0"}
        for label, (statement, cwd) in rows.items():
            counts[label] = _count(valgrind, statement, environment, cwd)
    return Instructions(counts=counts, old_tree=old)


def _count(valgrind: str, statement: str, environment: dict[str, str], cwd: Path) -> int | str:
    python = [sys.executable, "-c", statement]
    warm_up = subprocess.run(python, env=environment, cwd=cwd, capture_output=True, text=True)
    if warm_up.returncode != 0:
        return f"it failed: {last_line(warm_up.stderr)}"
    counted = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *python],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    found = _COLLECTED.search(counted.stderr)
    if counted.returncode != 0 or found is None:
        return f"callgrind failed: {last_line(counted.stderr)}"
    return int(found.group(1))
