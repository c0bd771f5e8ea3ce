"""The code the bench compares against: an earlier commit of keyward, measured in the same run.

``git archive`` writes the commit's files into a temporary directory (no network, nothing added to
the repository's worktrees), and the current ``bench`` package replaces the commit's own, so that
both trees are measured by the same code. The old tree runs on the interpreter and packages of
the bench's own environment. The directory is removed when the run ends.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# main before the DynamoDB round trips and the runtime were reworked (Python 3.13, webauthn 3,
# bytecode in the package, the deferred domain modules).
DEFAULT_REF = "b5cd10e"


@dataclass(frozen=True)
class Tree:
    """A tree of keyward to measure: its name in the report (a short commit hash), and where its files are."""

    name: str
    root: Path


CURRENT = Tree(name="new", root=ROOT)


class BaselineUnavailable(Exception):
    """The baseline's files could not be written (an unknown ref, or no git repository)."""


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[Tree]:
    """The commit ``ref`` in a temporary directory, with the current bench in it; removed afterwards."""
    archived = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True)
    if archived.returncode != 0:
        raise BaselineUnavailable(f"git archive {ref} failed: {archived.stderr.decode(errors='replace').strip()}")
    described = subprocess.run(
        ["git", "rev-parse", "--short", f"{ref}^{{commit}}"], cwd=ROOT, capture_output=True, text=True
    )
    name = described.stdout.strip() or ref
    with tempfile.TemporaryDirectory(prefix="keyward-bench-baseline-") as directory:
        root = Path(directory) / "keyward"
        root.mkdir()
        with tarfile.open(fileobj=io.BytesIO(archived.stdout)) as archive:
            archive.extractall(root, filter="data")
        shutil.rmtree(root / "bench", ignore_errors=True)
        shutil.copytree(ROOT / "bench", root / "bench", ignore=shutil.ignore_patterns("__pycache__"))
        yield Tree(name=name, root=root)


def last_line(text: str) -> str:
    """What a failed child said last: the reason shown in place of its figure."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
