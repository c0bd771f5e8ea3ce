"""Modules loaded on first use rather than at cold start.

A Lambda cold start imports ``app`` and everything it imports before the first request is served,
whichever request it is. A domain module that only some requests need (the stream function's
bulk invalidation, the key management of the settings pages) is bound here to a module object
that loads itself when one of its attributes is first read: those requests pay for it once, the
others never. The standard library's ``importlib.util.LazyLoader`` does the loading.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def deferred(name: str) -> ModuleType:
    """The module ``name``, executed when one of its attributes is first read (or now, if it was
    imported already)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    # What a completed import does too: `import package.name` then finds it as an attribute.
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module
