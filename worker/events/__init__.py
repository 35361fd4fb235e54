"""Events of issue 15: what happened to a connection or an app, told upstream.

``catalog`` declares every type, ``reasons`` the reason codes, ``emit`` writes an event in
its state change's transaction, ``envelope`` shapes it for receivers, ``schemas`` derives
the JSON Schemas.
"""

# The envelope's two functions, as the webhooks dispatcher imports them.
from worker.events.envelope import envelope_bytes as envelope_bytes
from worker.events.envelope import envelope_of as envelope_of

__all__ = ["catalog", "emit", "envelope", "reasons", "schemas"]
