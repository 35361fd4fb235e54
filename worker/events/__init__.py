"""Events of issue 15: what happened to a connection or an app, told upstream.

``catalog`` declares every type, ``reasons`` the reason codes, ``emit`` writes an event in
its state change's transaction, ``connection`` the events of a sync's or an exchange's
outcome, ``consent`` those of consents about to lapse, ``envelope`` the one shape (and
byte-stable body) every event travels in, ``schemas`` derives the JSON Schemas.
"""

__all__ = ["catalog", "connection", "consent", "emit", "envelope", "reasons", "schemas"]
