"""What runs a job, whichever job it is: the services it uses (``services``), the lanes it
waits in (``lanes``), its typed context (``context``), the lease and metrics around it
(``instrument``, ``lease``), the one hook through which it meets a failure (``failures``,
applying :func:`worker.decisions.decide`) and the one job-level retry policy beside it
(``job_retry``), and an arq worker that rides out a Redis restart (``resilient``).

It imports ``worker.bluebutton`` and ``worker.store``; ``worker.sync`` and ``worker.jobs``
import it, never the other way round.
"""

__all__ = [
    "context",
    "failures",
    "instrument",
    "job_retry",
    "lanes",
    "lease",
    "resilient",
    "services",
]
