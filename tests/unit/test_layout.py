"""The packages' public surfaces: each ``__init__`` lists what it offers, and it exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import worker

PACKAGES = [
    name for _, name, is_package in pkgutil.walk_packages(worker.__path__, "worker.") if is_package
]


@pytest.mark.parametrize("package", ["worker", *PACKAGES])
def test_every_package_says_what_it_offers(package: str) -> None:
    module = importlib.import_module(package)
    offered = getattr(module, "__all__", None)
    assert offered, f"{package}/__init__.py has no __all__"
    for name in offered:
        importlib.import_module(f"{package}.{name}")
