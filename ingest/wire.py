"""What every venue parser shares, whatever the feed: ``ParseError`` (times: ``slotml.venue``).

A leaf module (no ingest imports), so the feeds, the books and the transport can all raise and
count the same error without importing one another.
"""

from __future__ import annotations


class ParseError(ValueError):
    """A venue payload that does not have the shape we rely on (counted and skipped)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
