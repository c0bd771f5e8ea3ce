"""The operator's documents say what the code does: every setting chalicelib/base/config.py reads
is in docs/configuration.md, and docs/deploy.md names every table of the template and tells,
without a count that goes stale, which of them a teardown leaves behind."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]
NUMBER_WORDS = (
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
).split()


def _settings_read() -> set[str]:
    """Every KEYWARD_* name config.py mentions as a string: what it reads, directly or through a helper."""
    tree = ast.parse((PROJECT / "chalicelib" / "base" / "config.py").read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"KEYWARD_[A-Z0-9_]+", node.value)
    }


def test_every_setting_config_reads_is_documented():
    settings = _settings_read()
    assert {"KEYWARD_ORGS_TABLE", "KEYWARD_MAX_BODY_BYTES", "KEYWARD_LOG_LEVEL"} <= settings  # the parse finds them
    documented = set(re.findall(r"`(KEYWARD_[A-Z0-9_]+)`", (PROJECT / "docs" / "configuration.md").read_text()))
    assert not settings - documented, f"read by config.py, missing from docs/configuration.md: {settings - documented}"


def _template() -> dict[str, Any]:
    return json.loads((PROJECT / ".chalice" / "resources.json").read_text())


def _tables() -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in _template()["Resources"].items()
        if isinstance(resource, dict) and resource.get("Type") == "AWS::DynamoDB::Table"
    }


def _section(document: str, heading: str) -> str:
    found = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", document, re.M | re.S)
    assert found, f"docs/deploy.md has no section {heading!r}"
    return found.group(1)


def test_the_deploy_doc_names_every_table_of_the_template():
    stack = _section((PROJECT / "docs" / "deploy.md").read_text(), "What is in the stack")
    named = set(re.findall(r"`(\w+Table)`", stack))
    assert set(_tables()) - named == set(), "tables of .chalice/resources.json missing from 'What is in the stack'"
    assert named - set(_tables()) == set(), "'What is in the stack' names tables the template does not have"


def test_each_table_has_the_output_the_teardown_reads_its_name_from():
    outputs = _template()["Outputs"]
    for table in _tables():
        assert outputs.get(f"{table}Name", {}).get("Value") == {"Ref": table}, f"no output {table}Name"


def test_the_teardown_keeps_exactly_the_retained_tables_and_counts_none():
    teardown = _section((PROJECT / "docs" / "deploy.md").read_text(), "Tearing down")
    deleted_with_the_stack = {name for name, table in _tables().items() if table.get("DeletionPolicy") == "Delete"}
    # The loop that deletes the retained tables leaves out those the stack deleted itself.
    assert set(re.findall(r"grep -v (\w+)", teardown)) == deleted_with_the_stack
    counts = re.findall(rf"\b(?:{'|'.join(NUMBER_WORDS)}|\d+) (?:other |more )?tables?\b", teardown, re.I)
    assert not counts, f"the teardown counts tables, a figure that goes stale: {counts}"
