"""The bench's old code: a commit's files in a temporary directory, measured by the current bench."""

from __future__ import annotations

import subprocess

import pytest

from bench.baseline import ROOT, BaselineUnavailable, baseline_tree


def test_the_baseline_is_the_commits_files_with_the_current_bench_and_is_removed_afterwards():
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    committed_app = subprocess.run(
        ["git", "show", "HEAD:app.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    with baseline_tree("HEAD") as tree:
        assert tree.name == head
        assert tree.root != ROOT
        assert (tree.root / "app.py").read_text() == committed_app
        assert (tree.root / "bench" / "baseline.py").read_text() == (ROOT / "bench" / "baseline.py").read_text()
        assert not (tree.root / ".git").exists()
    assert not tree.root.exists()


def test_an_unknown_commit_is_refused_with_gits_reason():
    with pytest.raises(BaselineUnavailable, match="no-such-commit"):
        with baseline_tree("no-such-commit"):
            pass
