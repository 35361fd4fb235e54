"""The intake HTTP API (``bbingest serve``): signed connect / unlink / resync events from
upstream services in any language, queued as jobs without speaking arq's Redis format."""

__all__ = ["server"]
