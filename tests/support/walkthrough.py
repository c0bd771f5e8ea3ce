"""The README's curl walk-through: its script, as the README shows it, and running it the way the
README says (saved as a file, run with ``bash``), against an API."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.local_stack import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
WALKTHROUGH_TIMEOUT_SECONDS = 120.0


def readme_walkthrough() -> str:
    """The script between the README's walkthrough markers."""
    section = re.search(r"<!-- walkthrough:start -->(.*?)<!-- walkthrough:end -->", README.read_text(), re.DOTALL)
    assert section is not None, "README.md has no walkthrough markers"
    fenced = re.search(r"^```sh\n(.*?)^```", section.group(1), re.DOTALL | re.MULTILINE)
    assert fenced is not None, "the README's walkthrough has no ```sh block"
    return fenced.group(1)


def run_readme_walkthrough(*, directory: Path, environment: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Save the README's script as ``walkthrough.sh`` in ``directory`` and run ``bash
    walkthrough.sh`` from the project directory, as the README says: no shell options but its own."""
    script = directory / "walkthrough.sh"
    script.write_text(readme_walkthrough())
    return subprocess.run(
        ["bash", str(script)],
        cwd=PROJECT_ROOT,
        env=dict(environment),
        capture_output=True,
        text=True,
        timeout=WALKTHROUGH_TIMEOUT_SECONDS,
    )


def walked_through(walkthrough: subprocess.CompletedProcess[str], *, report: str) -> dict[str, Any]:
    """Assert the walk-through went to its end; return the key list its last step printed."""
    assert walkthrough.returncode == 0, report
    # Step 3 prints the bare state; step 4 then prints the key list, and nothing else follows.
    assert "\nmfa_required\n" in walkthrough.stdout, report
    keys_listing: dict[str, Any] = json.loads(walkthrough.stdout.split("\nmfa_required\n", 1)[1])
    [demo_key] = [key for key in keys_listing["keys"] if key["name"] == "Demo key"]
    assert demo_key["last_used_at"] is not None, report
    return keys_listing
