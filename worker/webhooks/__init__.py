"""Webhook delivery of issue 15: signed POSTs of the events outbox, at least once, in order
per connection."""

from worker.webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, signature_header, verify

__all__ = ["EVENT_ID_HEADER", "SIGNATURE_HEADER", "signature_header", "verify"]
