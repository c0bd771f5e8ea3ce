"""docs/architecture.md draws the floors that pyproject.toml's import contract holds: the same
packages, in the same order, and every package of chalicelib/ says in its docstring what it owns."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
CHALICELIB = PROJECT / "chalicelib"


def _contract_layers() -> list[list[str]]:
    config = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    [layers] = [
        contract["layers"] for contract in config["tool"]["importlinter"]["contracts"] if contract["type"] == "layers"
    ]
    return [[name.strip() for name in layer.split("|")] for layer in layers]


def _drawn_floors() -> list[list[str]]:
    document = (PROJECT / "docs" / "architecture.md").read_text()
    drawing = re.search(r"<!-- floors:start -->\n```\n(.*?)```\n<!-- floors:end -->", document, re.S)
    assert drawing, "docs/architecture.md has no floors drawing between its markers"
    floors = []
    for line in drawing.group(1).splitlines():
        # A floor's packages come first, two or more spaces apart, before its description.
        names = re.match(r"((?:[a-z]+ {2,})+)", line + "  ")
        floors.append([name for name in names.group(1).split() if (CHALICELIB / name).is_dir()] if names else [])
    return floors


def _packages() -> set[str]:
    return {path.parent.name for path in CHALICELIB.glob("*/__init__.py")}


def test_the_drawing_has_the_contracts_floors_in_their_order():
    assert _drawn_floors() == _contract_layers()


def test_every_package_stands_on_a_floor():
    on_floors = {name for layer in _contract_layers() for name in layer}
    assert on_floors == _packages()


def test_every_package_says_what_it_owns():
    for package in sorted(_packages()):
        docstring = ast.get_docstring(ast.parse((CHALICELIB / package / "__init__.py").read_text()))
        assert docstring and len(docstring.split()) >= 8, (
            f"chalicelib/{package}/__init__.py says nothing of what it owns"
        )
