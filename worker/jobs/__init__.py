"""arq entry points, joining ``bluebutton`` (BB2) and ``store`` (Postgres).

What the rest of the service uses: the job declarations (``spec``, ``lanes``, ``payloads``),
the way onto the queues (``queue``, with ``backlog`` for the exchange backlog) and the
replica (``worker``). Every other module is the jobs' own.
"""

__all__ = ["backlog", "lanes", "payloads", "queue", "spec", "worker"]
