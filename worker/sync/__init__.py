"""The sync engine: pulls one connection's claims from BB2 into the store.

``model`` holds the pure types (plan, cursor, run, history) that ``worker.store.sync_runs``
stores; ``plan`` decides what a run does, ``ranges`` how a large search is split; ``engine``
walks the pages; ``tokens`` (with
``refresh_lock``) keeps a connection's access token fresh; ``outcome`` starts and finishes a
run; ``revocation`` settles the token revocations owed to CMS (used by connect and unlink
alike). The jobs in ``worker.jobs`` are thin entry points onto these. This package may import
``worker.bluebutton`` and ``worker.store``; neither imports it, except the store's use of
``model``.
"""

__all__ = ["engine", "model", "outcome", "plan", "ranges", "refresh_lock", "revocation", "tokens"]
