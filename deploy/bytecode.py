"""Compiled bytecode for the Lambda package, so that a cold start does not compile.

Lambda unpacks the package into a read-only directory and runs it with the runtime's Python:
without bytecode in the package, every cold start compiles every module it imports, keyward's
and the vendored libraries', and cannot keep the result. The bytecode written here is
unchecked-hash ``.pyc`` (PEP 552): the interpreter loads it without comparing it with the
source's modification time or hash, so neither unpacking nor the zip's timestamps can
invalidate it. It must be built by the Python the runtime runs, whose magic number it carries.
"""

from __future__ import annotations

import copy
import py_compile
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class WrongPython(Exception):
    """The packaging Python is not the one the Lambda runtime runs: its bytecode would be ignored."""


@dataclass(frozen=True)
class Compiled:
    modules: int
    # Sources the runtime's Python cannot compile either (a vendored file for another Python);
    # they would fail on import with or without bytecode, so they are left as they are.
    skipped: tuple[str, ...]


def runtime_python() -> str:
    """The Lambda runtime's name for this interpreter, such as ``python3.13``."""
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def cache_name(source: str) -> str:
    """Where the runtime looks for a module's bytecode: ``pkg/__pycache__/mod.cpython-313.pyc``
    beside ``pkg/mod.py``, whatever this process's own bytecode settings (a cache prefix, -O)."""
    directory, _, file = source.rpartition("/")
    cached = f"__pycache__/{file.removesuffix('.py')}.{sys.implementation.cache_tag}.pyc"
    return f"{directory}/{cached}" if directory else cached


def add_bytecode(*, package: Path, runtime: str) -> Compiled:
    """Rewrite the zip at ``package`` with an unchecked-hash ``.pyc`` beside every ``.py``.

    Args:
        package: chalice's ``deployment.zip``.
        runtime: the functions' ``Runtime`` in the template, such as ``python3.13``.

    Raises:
        WrongPython: this interpreter is not the runtime's Python.
    """
    if runtime != runtime_python():
        raise WrongPython(f"the package is for {runtime}, but this is {runtime_python()}: package with {runtime}")
    rewritten = package.with_suffix(".bytecode.zip")
    compiled, skipped = 0, []
    with (
        tempfile.TemporaryDirectory(prefix="keyward-bytecode-") as scratch,
        zipfile.ZipFile(package) as source,
        zipfile.ZipFile(rewritten, "w", compression=zipfile.ZIP_DEFLATED) as target,
    ):
        entries = source.infolist()
        ours = {cache_name(entry.filename) for entry in entries if entry.filename.endswith(".py")}
        for entry in entries:
            # A .pyc that a wheel (or the packaged tree's own __pycache__) brought along is replaced
            # by ours. The target gets a copy of the entry: writing records the target's offset in
            # the ZipInfo, and the source's own must stay as it is for the reads below.
            if entry.filename not in ours:
                target.writestr(copy.copy(entry), source.read(entry))
        for entry in entries:
            if not entry.filename.endswith(".py"):
                continue
            cache = cache_name(entry.filename)
            bytecode = _compile(source.read(entry), entry.filename, Path(scratch))
            if bytecode is None:
                skipped.append(entry.filename)
                continue
            info = zipfile.ZipInfo(cache, date_time=entry.date_time)
            info.external_attr, info.compress_type = entry.external_attr, zipfile.ZIP_DEFLATED
            target.writestr(info, bytecode)
            compiled += 1
    rewritten.replace(package)
    return Compiled(modules=compiled, skipped=tuple(skipped))


def _compile(source: bytes, name: str, scratch: Path) -> bytes | None:
    path = scratch / "module.py"
    path.write_bytes(source)
    try:
        written = py_compile.compile(
            str(path),
            cfile=str(scratch / "module.pyc"),
            dfile=name,
            doraise=True,
            optimize=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    except py_compile.PyCompileError:
        return None
    if written is None:  # only without doraise
        return None
    return Path(written).read_bytes()
