"""The package's bytecode step on a package shaped like keyward's: a stale ``.pyc`` that chalice
copied from a source tree's ``__pycache__`` may come before modules of other packages."""

from __future__ import annotations

import zipfile
from pathlib import Path

from deploy.bytecode import add_bytecode, cache_name, runtime_python

SOURCES = {
    "chalicelib/__init__.py": b'"""keyward."""\n',
    "chalicelib/delivery/__init__.py": b'"""Delivery."""\n',
    "chalicelib/org/members.py": b"MEMBERS = 1\n",
    "chalicelib/org/preview.py": b"PREVIEW = 2\n",
}


def test_a_stale_pyc_before_other_packages_modules_is_replaced_and_every_module_compiled(tmp_path: Path):
    package = tmp_path / "deployment.zip"
    with zipfile.ZipFile(package, "w", compression=zipfile.ZIP_DEFLATED) as written:
        written.writestr("chalicelib/__init__.py", SOURCES["chalicelib/__init__.py"])
        written.writestr("chalicelib/delivery/__init__.py", SOURCES["chalicelib/delivery/__init__.py"])
        # As chalice packs a developer's tree: the bytecode of their own run, beside its source.
        written.writestr(cache_name("chalicelib/delivery/__init__.py"), b"stale bytecode of another build")
        written.writestr("chalicelib/org/members.py", SOURCES["chalicelib/org/members.py"])
        written.writestr("chalicelib/org/preview.py", SOURCES["chalicelib/org/preview.py"])

    compiled = add_bytecode(package=package, runtime=runtime_python())

    assert compiled.modules == len(SOURCES) and compiled.skipped == ()
    with zipfile.ZipFile(package) as result:
        assert result.testzip() is None
        assert {name: result.read(name) for name in SOURCES} == SOURCES
        stale = result.read(cache_name("chalicelib/delivery/__init__.py"))
        assert stale != b"stale bytecode of another build" and stale[:4] == _magic()
        assert sorted(result.namelist()) == sorted([*SOURCES, *(cache_name(name) for name in SOURCES)])


def _magic() -> bytes:
    import importlib.util

    return importlib.util.MAGIC_NUMBER
