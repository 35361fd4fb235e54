"""arq entry points: the job functions, joining ``sync`` (the engine), ``bluebutton`` (BB2)
and ``store`` (Postgres), run by ``worker.runtime``.

What the rest of the service uses: the job declarations (``spec``, ``payloads``), the way
onto the queues (``queue``, with ``backlog`` for the exchange backlog), the payload schemas
(``schemas``, ``make schemas``) and the replica
(``worker``). Every other module is the jobs' own.
"""

__all__ = ["backlog", "payloads", "queue", "schemas", "spec", "worker"]
