"""Webhook delivery of issue 15: signed POSTs of the events outbox, at least once, in order
per connection (README, "Webhooks")."""

__all__ = ["dispatcher", "receiver", "schedule", "sender", "signing", "urls"]
