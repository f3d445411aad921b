"""Listing responses bounded in bytes as well as in items: every gRPC client
refuses a message over 4 MiB by default, and a page of 50 jobs with 1 MiB
outputs, or of events carrying them, would be far past it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from google.protobuf.message import Message

# Room under 4 MiB for the response's own fields and the page token.
PAGE_BYTES = 3 * 1024 * 1024

Item = TypeVar("Item")
M = TypeVar("M", bound=Message)


class PageBudget(Generic[Item, M]):
    """Converts a listing's items as storage reads them, and refuses the one
    that would take the response past PAGE_BYTES; the page then ends there and
    its token resumes at that item. The first item is always taken, so every
    page makes progress (a single item is bounded by the size limits)."""

    def __init__(self, convert: Callable[[Item], M], limit: int = PAGE_BYTES) -> None:
        self._convert = convert
        self._limit = limit
        self._bytes = 0
        self.messages: list[M] = []

    def fits(self, item: Item) -> bool:
        message = self._convert(item)
        size = message.ByteSize() + 6  # its field tag and length prefix
        if self.messages and self._bytes + size > self._limit:
            return False
        self.messages.append(message)
        self._bytes += size
        return True
