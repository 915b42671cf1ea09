"""Import every module of a choice package so that its ``register_*`` lines run.

A new choice is one file in ``space/blocks``, ``space/norms`` or ``space/attention``: no list to edit.
"""
from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package_name: str, package_path: list[str]) -> None:
    for info in sorted(pkgutil.iter_modules(package_path), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
