"""Everything that talks to Postgres, and nothing else (it never imports ``worker.bluebutton``):
one module per table or concern; ``db`` opens the pool and ``migrate`` the schema."""

__all__ = [
    "app_pauses",
    "apps",
    "audit",
    "connections",
    "db",
    "exchanges",
    "failures",
    "grants",
    "keys",
    "listing",
    "migrate",
    "outbox",
    "partitioning",
    "rekey",
    "resources",
    "revocations",
    "sync_runs",
    "tokens",
    "unlinks",
]
