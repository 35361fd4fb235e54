"""Everything that talks to BB2, and nothing else (it never imports ``worker.store``).

``oauth`` (PKCE, code exchange, refresh, revoke) and ``fhir`` (paged reads) send through
``client`` (one budgeted, retrying client; ``app_clients`` keeps one per app and
priority) and the shared ``budget`` (its adaptive rate's decisions in ``aimd``);
``answer_errors`` maps each BB2 answer to the error it stands for, ``retry`` says when a
request is repeated (its ``RetryPolicy``); ``split`` splits a large EOB search, ``bundle``
validates pages, ``endpoints`` names the paths.
"""

__all__ = [
    "aimd",
    "answer_errors",
    "app_clients",
    "budget",
    "bundle",
    "client",
    "endpoints",
    "fhir",
    "oauth",
    "retry",
    "split",
]
