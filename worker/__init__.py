"""bluebutton-ingest: Medicare claims from CMS Blue Button 2.0 into Postgres.

The packages: ``bluebutton`` (BB2), ``store`` (Postgres), ``runtime`` (what runs a job: services,
lanes, the failure hook, job retry), ``sync`` (the sync engine joining them), ``jobs`` (the
arq entry points onto it), ``intake`` (the signed HTTP API) and
``emulator`` (a local BB2, never imported by the others). Beside them: ``cli`` (the
``bbingest`` command), ``settings``, ``errors`` with ``decisions`` (the exception tree and
its decision table), ``crypto``, ``log``.
"""

__all__ = [
    "bluebutton",
    "cli",
    "crypto",
    "decisions",
    "emulator",
    "errors",
    "intake",
    "jobs",
    "log",
    "runtime",
    "settings",
    "store",
    "sync",
]
