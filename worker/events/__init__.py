"""Events of issue 15: what happened to a connection or an app, told upstream.

``catalog`` declares every type, ``reasons`` the reason codes, ``emit`` writes an event in
its state change's transaction, ``connection`` the events of a sync's or an exchange's
outcome, ``consent`` those of consents about to lapse, ``envelope`` shapes an event for
receivers, ``schemas`` derives the JSON Schemas.
"""

# The envelope's two functions, as the webhooks dispatcher imports them.
from worker.events.envelope import envelope_bytes as envelope_bytes
from worker.events.envelope import envelope_of as envelope_of

__all__ = ["catalog", "connection", "consent", "emit", "envelope", "reasons", "schemas"]
