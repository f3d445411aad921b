"""Delivery retry policy as pure functions; the clock and randomness are passed in.

A schedule is a tuple of delays in seconds. Entry i is the delay before attempt
i + 1, so the schedule's length is the maximum number of attempts.
"""

from __future__ import annotations

import math
import random
from datetime import UTC
from email.utils import parsedate_to_datetime

from ..durations import parse_duration

__all__ = [
    "DEFAULT_SCHEDULE",
    "next_delay",
    "parse_retry_after",
    "parse_schedule",
]

# Svix's schedule: an immediate try, then backing off to ten hours, eight in all.
DEFAULT_SCHEDULE = "0,5s,5m,30m,2h,5h,10h,10h"


def parse_schedule(text: str) -> tuple[float, ...]:
    """Parse ``"0,5s,5m,..."`` into delays in seconds.

    Each entry is a non-negative number with unit ms, s, m or h; a bare number is
    seconds. Raises ValueError naming the bad entry.
    """
    if not text.strip():
        raise ValueError("retry schedule is empty")
    delays: list[float] = []
    for position, raw in enumerate(text.split(","), start=1):
        entry = raw.strip()
        if not entry:
            raise ValueError(f"retry schedule entry {position} is empty")
        try:
            delays.append(parse_duration(entry))
        except ValueError:
            raise ValueError(
                f"retry schedule entry {position} ({entry!r}) is not a non-negative number with unit ms, s, m or h"
            ) from None
    return tuple(delays)


def next_delay(
    schedule: tuple[float, ...],
    attempts_made: int,
    *,
    rng: random.Random,
    retry_after: float | None = None,
    jitter: float = 0.2,
    retry_after_cap: float = 3600.0,
) -> float | None:
    """Seconds to wait before the next attempt, or None when the schedule is spent.

    The scheduled delay gets +/- ``jitter`` so retries to one endpoint spread out.
    A server's Retry-After can lengthen the wait (up to ``retry_after_cap``) but
    never shorten it, and it still uses up its slot in the schedule.
    """
    if attempts_made < 0:
        raise ValueError(f"attempts_made must not be negative, got {attempts_made}")
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made] * rng.uniform(1 - jitter, 1 + jitter)
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), retry_after_cap))
    return delay


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds from ``now`` (unix seconds) that a Retry-After header asks to wait.

    Accepts delta-seconds or an HTTP-date; a date in the past means 0. Anything
    unreadable gives None, so the caller falls back to its schedule.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # "-0000" yields a naive datetime; HTTP dates are UTC anyway.
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)
