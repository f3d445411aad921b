"""Turning what people type into request values: JSON or YAML documents
(inline or from files), durations, points in time, NAME=VALUE pairs."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from hookline.client import _values as json_values
from hookline.client._values import too_deep

from ._errors import CliError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
YAML_SUFFIXES = (".yaml", ".yml")
# A deadline beyond a day is a typo; far beyond it (about 1e10 s) gRPC's deadline
# arithmetic overflows and every call fails at once with DEADLINE_EXCEEDED.
MAX_CALL_TIMEOUT_S = 86400.0
_MAX_DURATION_S = 315_576_000_000  # the range of google.protobuf.Duration
# Far past what a server takes; reading `--input-file /dev/zero` stops here.
MAX_DOCUMENT_CHARS = 64 * 2**20


def read_document(path: str, what: str) -> Any:
    """A JSON or YAML file (by its suffix; '-' reads JSON or YAML from stdin)."""
    try:
        if path == "-":
            text = sys.stdin.read(MAX_DOCUMENT_CHARS + 1)
        else:
            with open(path, encoding="utf-8") as file:
                text = file.read(MAX_DOCUMENT_CHARS + 1)
    except OSError as error:
        raise CliError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise CliError(f"{what} {path} is not UTF-8 text") from None
    if len(text) > MAX_DOCUMENT_CHARS:
        raise CliError(f"{what} {path} is over {MAX_DOCUMENT_CHARS // 2**20} MiB; a server takes 1 MiB by default")
    if path.lower().endswith(YAML_SUFFIXES):
        return _yaml(text, f"{what} {path}")
    try:
        return parse_json(text, f"{what} {path}")
    except CliError:
        if path == "-" or not path.lower().endswith(".json"):
            try:
                return _yaml(text, f"{what} {path}")
            except CliError:
                pass
        raise


def _yaml(text: str, where: str) -> Any:
    try:
        import yaml  # optional: only YAML files need it
    except ImportError:
        raise CliError(f"reading YAML ({where}) needs PyYAML: pip install pyyaml, or write it as JSON") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CliError(f"{where} is not valid YAML: {error}") from None
    except RecursionError:
        raise CliError(f"{where} is {too_deep('hundreds of levels')}") from None


def parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:  # the parser's own limit, near 1000 levels
        raise CliError(f"{where} is {too_deep('hundreds of levels')}") from None
    except ValueError as error:
        raise CliError(f"{where} is not valid JSON: {error}") from None


def to_struct(data: Any, what: str) -> struct_pb2.Struct:
    if not isinstance(data, dict):
        raise CliError(f"{what} must be a JSON object, not {type(data).__name__}")
    try:
        return json_values.to_struct(data)
    except (TypeError, ValueError) as error:
        raise CliError(f"{what} cannot be sent as JSON: {error}") from None


def to_value(data: Any, what: str) -> struct_pb2.Value:
    try:
        return json_values.to_value(data)
    except (TypeError, ValueError) as error:
        raise CliError(f"{what} cannot be sent as JSON: {error}") from None


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type=` for an integer from `low` to `high`: a value the
    request field cannot hold is a usage error, not a failure to build the request."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {number}")
        return number

    return parse


INT32 = bounded_int(-(2**31), 2**31 - 1)


def call_timeout(text: str) -> float:
    """A call deadline in seconds, above 0 and at most MAX_CALL_TIMEOUT_S (for argparse `type=`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= MAX_CALL_TIMEOUT_S:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0 and at most {MAX_CALL_TIMEOUT_S:g} (a day), not {text}"
        )
    return value


def seconds(text: str) -> float:
    """`90`, `500ms`, `30s`, `5m`, `2h`, `1d` as seconds (for argparse `type=`)."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 5m, 2h, 1d)")
    value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not value <= _MAX_DURATION_S:  # digits enough to make it infinite, too
        raise argparse.ArgumentTypeError(f"too long a duration: {text!r} (at most 10000 years)")
    return value


def duration(text: str) -> duration_pb2.Duration:
    result = duration_pb2.Duration()
    result.FromMilliseconds(int(seconds(text) * 1000))
    return result


def point_in_time(text: str) -> timestamp_pb2.Timestamp:
    """An RFC 3339 time (`2025-01-31T12:00:00Z`) or a duration ago (`2h`)."""
    if _DURATION.match(text):
        try:
            moment = datetime.now(UTC) - timedelta(seconds=seconds(text))
        except OverflowError:
            raise argparse.ArgumentTypeError(f"{text} ago is before the year 1") from None
    else:
        try:
            parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a time: {text!r} (an RFC 3339 time such as 2025-01-31T12:00:00Z, or 2h for 2 h ago)"
            ) from None
        try:
            moment = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except OverflowError:  # a time zone moves it out of the years 1 to 9999
            raise argparse.ArgumentTypeError(f"not a time in the years 1 to 9999 in UTC: {text!r}") from None
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(moment)
    return result


def header(text: str) -> tuple[str, str]:
    """`Name=value` or `Name: value`."""
    for separator in ("=", ":"):
        name, found, value = text.partition(separator)
        if found and name.strip():
            return name.strip(), value.strip()
    raise argparse.ArgumentTypeError(f"not a header: {text!r} (write Name=value)")
