"""A local emulator of the CMS Blue Button 2.0 API (v2), the yardstick the worker is tested on.

It shares no code with the rest of `worker` on purpose: it must stay an independent reading of
how BB2 behaves.
"""

__all__ = ["server"]
