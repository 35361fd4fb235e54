"""The packages' public surfaces (each ``__init__`` lists what it offers, and it exists), and
the size limits of worker/'s modules and functions."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

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
        # A module of the package, or a name its __init__ holds.
        assert hasattr(module, name) or importlib.import_module(f"{package}.{name}")


# Size limits of issue 14: a module of worker/ (the emulator aside) holds one job in at most
# MAX_MODULE_LINES lines, a function at most MAX_FUNCTION_LINES from its ``def`` to its last.
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 45
WORKER = Path(worker.__file__).parent


def _modules() -> list[Path]:
    return sorted(p for p in WORKER.rglob("*.py") if "emulator" not in p.relative_to(WORKER).parts)


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """Every function's qualified name and length in lines (``def`` to its last line)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            yield f"{prefix}{node.name}", node.end_lineno - node.lineno + 1
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _name(path: Path) -> str:
    return path.relative_to(WORKER.parent).as_posix()


def test_no_module_of_worker_is_too_long() -> None:
    long = {
        _name(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_of_worker_is_too_long() -> None:
    long = {
        f"{_name(p)}::{name}": n
        for p in _modules()
        for name, n in _functions(ast.parse(p.read_text()))
        if n > MAX_FUNCTION_LINES
    }
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_size_limits_catch_a_long_function() -> None:
    source = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    assert dict(_functions(ast.parse(source))) == {"f": MAX_FUNCTION_LINES + 1}


def _imports(path: Path) -> set[str]:
    """The ``worker`` modules one module imports (at any depth of its code)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            # ``from worker import errors`` imports worker.errors: the names count too.
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("worker.")}


# The one-way flow: bluebutton and store at the bottom (neither knows the other), runtime
# (what runs a job) above them, then sync (the engine), then jobs (the entry points).
FLOW = [
    # BB2 and nothing of the service but its errors, settings, constants and metrics.
    (
        "bluebutton",
        ("worker.",),
        (
            "worker.bluebutton",
            "worker.errors",
            "worker.settings",
            "worker.constants",
            "worker.metrics",
        ),
    ),
    # The store stores the sync model's types and knows nothing else of the sync.
    (
        "store",
        ("worker.bluebutton", "worker.runtime", "worker.sync", "worker.jobs"),
        ("worker.sync.model",),
    ),
    # Events are written by the store's transactions and know nothing of BB2 or jobs.
    ("events", ("worker.bluebutton", "worker.runtime", "worker.sync", "worker.jobs"), ()),
    # Webhooks deliver what the outbox holds; a slow receiver must never reach a job or BB2.
    ("webhooks", ("worker.bluebutton", "worker.runtime", "worker.sync", "worker.jobs"), ()),
    ("runtime", ("worker.sync", "worker.jobs", "worker.intake"), ()),
    ("sync", ("worker.jobs", "worker.intake"), ()),
]


@pytest.mark.parametrize(("package", "forbidden", "allowed"), FLOW)
def test_the_flow_is_one_way(
    package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    wrong = {
        f"{_name(p)} imports {name}"
        for p in (WORKER / package).rglob("*.py")
        for name in _imports(p)
        if name.startswith(forbidden) and not name.startswith(allowed)
    }
    assert not wrong, wrong
