"""Everything that talks to BB2, and nothing else (it never imports ``worker.store``).

``oauth`` (PKCE, code exchange, refresh, revoke) and ``fhir`` (paged reads) send through
``client`` (one budgeted, retrying client; ``clients`` keeps one per app and lane) and the
shared ``budget`` (its adaptive rate's decisions in ``aimd``); ``answers`` says what a BB2
answer means, ``retry`` when a request is
repeated; ``bundle`` validates pages, ``endpoints`` names the paths.
"""

__all__ = [
    "aimd",
    "answers",
    "budget",
    "bundle",
    "client",
    "clients",
    "endpoints",
    "fhir",
    "oauth",
    "retry",
]
