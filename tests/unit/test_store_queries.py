"""Every query on ``sync_runs`` and ``sync_seen`` names ``connection_id``: the key a sharded
store (Citus) distributes them by (migration 010), so that each query runs on one shard."""

import ast
import re
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parents[2] / "worker"
TABLES = re.compile(r"\b(?:FROM|UPDATE|INTO|JOIN)\s+(sync_runs|sync_seen)\b", re.IGNORECASE)


def sql_strings() -> list[tuple[str, str]]:
    """(module, text) of every string literal of worker/ that reads or writes the tables."""
    found = []
    for path in sorted(WORKER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and TABLES.search(text):
                found.append((str(path.relative_to(WORKER)), text))
    return found


def scopes_without_key(sql: str) -> list[str]:
    """Each reference to the tables with the rest of its statement or subquery (up to the
    parenthesis that closes it) where ``connection_id`` is not named."""
    missing = []
    for match in TABLES.finditer(sql):
        depth, end = 0, len(sql)
        for at in range(match.end(), len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[at], 0)
            if depth < 0:
                end = at
                break
        if "connection_id" not in sql[match.start() : end]:
            missing.append(sql[match.start() : end])
    return missing


def test_the_store_is_scanned() -> None:
    modules = {module for module, _ in sql_strings()}
    assert "store/sync_runs.py" in modules
    assert len(sql_strings()) >= 10


@pytest.mark.parametrize(("module", "sql"), sql_strings())
def test_every_sync_runs_and_sync_seen_query_names_its_connection(module: str, sql: str) -> None:
    assert scopes_without_key(sql) == [], module


def test_the_check_catches_a_query_by_run_id_alone() -> None:
    assert scopes_without_key("UPDATE sync_runs SET pages = 1 WHERE run_id = $1")
    nested = (
        "DELETE FROM t WHERE x IN (SELECT run_id FROM sync_seen WHERE run_id = $1)"
        " AND connection_id = $2"
    )
    assert scopes_without_key(nested)
    assert not scopes_without_key("SELECT 1 FROM sync_seen s WHERE s.connection_id = $1")
