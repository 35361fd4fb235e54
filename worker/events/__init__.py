"""Events of issue 15: what happened to a connection or an app, told upstream."""

from worker.events.envelope import envelope_bytes, envelope_of

__all__ = ["envelope_bytes", "envelope_of"]
