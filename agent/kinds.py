"""Load every source kind and WMS kind: each module of ``pos_adapters`` and ``wms_client`` registers itself.

A new kind is one new module; nothing else has to list it.
"""

from __future__ import annotations

import importlib
import pkgutil

import pos_adapters
import wms_client

_loaded = False


def load_kinds() -> None:
    """Import every top-level module of the adapter packages once (modules register their kinds)."""
    global _loaded
    if _loaded:
        return
    for package in (pos_adapters, wms_client):
        for info in pkgutil.iter_modules(package.__path__):
            if not info.ispkg and not info.name.startswith("_"):
                importlib.import_module(f"{package.__name__}.{info.name}")
    _loaded = True
