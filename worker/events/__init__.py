"""Events of issue 15: what happened to a connection or an app, told upstream.

``envelope``: the one shape (and byte-stable body) every event travels in."""

__all__ = ["envelope"]
