"""Webhook filters: an optional JMESPath expression per webhook, evaluated
against the whole message of each event (eventType, entityType, action, data,
metadata) when the event fans out. Only a truthy result gets the webhook a
delivery; an expression that fails on a message counts as filtered and never
fails the event (it is logged once per webhook)."""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections import Counter
from functools import lru_cache
from typing import Any

from jmespath import exceptions as jmespath_exceptions
from jmespath.parser import ParsedResult

from .errors import InvalidArgument
from .execution import flowdef

log = logging.getLogger("hookline.filters")


class Outcome(enum.StrEnum):
    """What a filter made of one event, as the metric counts it."""

    PASSED = "passed"
    FILTERED = "filtered"
    ERROR = "error"  # evaluation failed: filtered too


def parse(source: str, field: str) -> str:
    """`source` once it is a valid filter (empty means none); InvalidArgument otherwise."""
    if source:
        flowdef.parse_expression(source, field)
    return source


@lru_cache(maxsize=1024)
def _compiled(source: str) -> ParsedResult:
    return flowdef.parse_expression(source, "filter")


class _Tally:
    """Outcomes counted in this process (metrics.py reads them), and the webhooks
    whose filter failure was already logged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[Outcome] = Counter()
        self._logged: set[tuple[str, str]] = set()

    def count(self, outcome: Outcome) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def first_failure(self, webhook_id: str, source: str) -> bool:
        """Whether this webhook's filter has not failed before (once per filter text)."""
        with self._lock:
            if (webhook_id, source) in self._logged:
                return False
            if len(self._logged) > 100_000:  # bounded; a webhook may be logged again after that
                self._logged.clear()
            self._logged.add((webhook_id, source))
            return True


tally = _Tally()


# What evaluating an expression on a message can raise: jmespath's own errors,
# too deep a message, and its functions computing in Python (sum() overflowing).
_EVALUATION_ERRORS = (
    InvalidArgument,
    jmespath_exceptions.JMESPathError,
    RecursionError,
    ArithmeticError,
    ValueError,
    TypeError,
)


def passes(webhook_id: str, source: str, message: Any) -> bool:
    """Whether a webhook with filter `source` gets the event whose message (the
    parsed body) is `message`."""
    if not source:
        return True
    try:
        result = flowdef.truthy(_compiled(source).search(message))
    except _EVALUATION_ERRORS as error:
        tally.count(Outcome.ERROR)
        if tally.first_failure(webhook_id, source):
            log.warning("webhook %s: its filter failed on an event, which it does not get: %s", webhook_id, error)
        return False
    tally.count(Outcome.PASSED if result else Outcome.FILTERED)
    return result


def message_of(body: bytes) -> Any:
    """The message a filter sees: the body, parsed."""
    return json.loads(body)
