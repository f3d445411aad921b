"""Tests for hookline.server.delivery.retry: schedule parsing, jitter, Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from hookline.server.delivery.retry import (
    DEFAULT_SCHEDULE,
    next_delay,
    parse_retry_after,
    parse_schedule,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", (0.0,)),
        ("5", (5.0,)),
        ("1.5", (1.5,)),
        ("250ms", (0.25,)),
        ("5s", (5.0,)),
        ("5m", (300.0,)),
        ("2h", (7200.0,)),
        ("0.5h", (1800.0,)),
        ("1d", (86400.0,)),
        (".5s", (0.5,)),
        (" 0 , 5s ,5 m", (0.0, 5.0, 300.0)),
        (DEFAULT_SCHEDULE, (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)),
    ],
)
def test_parse_schedule(text: str, expected: tuple[float, ...]) -> None:
    assert parse_schedule(text) == pytest.approx(expected)


def test_default_schedule_is_eight_attempts() -> None:
    assert len(parse_schedule(DEFAULT_SCHEDULE)) == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "retry schedule is empty"),
        ("   ", "retry schedule is empty"),
        ("5s,,5m", "entry 2 is empty"),
        ("5s,", "entry 2 is empty"),
        ("-5s", r"entry 1 \('-5s'\)"),
        ("5w", r"entry 1 \('5w'\)"),
        ("0,5x", r"entry 2 \('5x'\)"),
        ("s", r"entry 1 \('s'\)"),
        ("nan", r"entry 1 \('nan'\)"),
        ("inf", r"entry 1 \('inf'\)"),
        ("1e3s", r"entry 1 \('1e3s'\)"),
        ("5.s", r"entry 1 \('5.s'\)"),
        ("5S", r"entry 1 \('5S'\)"),
    ],
)
def test_parse_schedule_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(text)


def test_next_delay_stays_within_jitter() -> None:
    schedule = parse_schedule(DEFAULT_SCHEDULE)
    rng = random.Random(1234)
    for attempts_made, base in enumerate(schedule):
        for _ in range(200):
            delay = next_delay(schedule, attempts_made, rng=rng)
            assert delay is not None
            assert base * 0.8 <= delay <= base * 1.2


def test_next_delay_jitter_actually_varies() -> None:
    rng = random.Random(7)
    delays = {next_delay((60.0,), 0, rng=rng) for _ in range(20)}
    assert len(delays) > 1


def test_next_delay_is_reproducible_with_a_seed() -> None:
    schedule = (5.0, 300.0)
    first = [next_delay(schedule, i, rng=random.Random(42)) for i in range(2)]
    second = [next_delay(schedule, i, rng=random.Random(42)) for i in range(2)]
    assert first == second


def test_next_delay_without_jitter() -> None:
    assert next_delay((5.0, 300.0), 1, rng=random.Random(0), jitter=0) == 300.0


@pytest.mark.parametrize("attempts_made", [8, 9, 100])
def test_spent_schedule_gives_none(attempts_made: int) -> None:
    schedule = parse_schedule(DEFAULT_SCHEDULE)
    assert next_delay(schedule, attempts_made, rng=random.Random(0)) is None
    assert next_delay(schedule, attempts_made, rng=random.Random(0), retry_after=10) is None


def test_next_delay_rejects_negative_attempts() -> None:
    with pytest.raises(ValueError):
        next_delay((1.0,), -1, rng=random.Random(0))


@pytest.mark.parametrize(
    ("scheduled", "retry_after", "expected"),
    [
        (5.0, 7200.0, 3600.0),  # capped at an hour
        (5.0, 60.0, 60.0),  # longer than scheduled: wait as asked
        (300.0, 10.0, 300.0),  # shorter than scheduled: keep the schedule
        (5.0, -3.0, 5.0),  # nonsense never shortens the wait
        (7200.0, 7200.0, 7200.0),  # the cap limits Retry-After, not the schedule
    ],
)
def test_retry_after_clamp(scheduled: float, retry_after: float, expected: float) -> None:
    delay = next_delay((scheduled,), 0, rng=random.Random(0), retry_after=retry_after, jitter=0)
    assert delay == expected


def test_retry_after_custom_cap() -> None:
    delay = next_delay((1.0,), 0, rng=random.Random(0), retry_after=500, jitter=0, retry_after_cap=120)
    assert delay == 120.0


NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 01 May 2024 12:02:00 GMT", 120.0),
        ("Wed, 01 May 2024 13:00:00 GMT", 3600.0),
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past
        ("Wed, 01 May 2024 12:00:30 -0000", 30.0),  # naive date taken as UTC
        ("Wednesday, 01-May-24 12:01:00 GMT", 60.0),  # obsolete RFC 850 form
    ],
)
def test_parse_retry_after(value: str, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "12abc", "Wed, 99 Foo 2024", "٣"])
def test_parse_retry_after_garbage(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None
