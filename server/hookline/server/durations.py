"""Durations written the way operators write them: "250ms", "5s", "30m", "2h", "5d"."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?", re.ASCII)


def parse_duration(text: str) -> float:
    """Seconds in `text`: a non-negative number with unit ms, s, m, h or d (bare
    numbers are seconds). Raises ValueError."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text.strip()!r} is not a duration such as 500ms, 5s, 5m, 2h or 5d")
    number, unit = match.groups()
    return float(number) * _UNIT_SECONDS[unit or "s"]
