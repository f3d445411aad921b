"""Turning what people type into request values: JSON or YAML documents
(inline or from files), durations, points in time, NAME=VALUE pairs."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from ._errors import CliError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
YAML_SUFFIXES = (".yaml", ".yml")


def read_document(path: str, what: str) -> Any:
    """A JSON or YAML file (by its suffix; '-' reads JSON or YAML from stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise CliError(f"{what} {path} is not UTF-8 text") from None
    if path.lower().endswith(YAML_SUFFIXES):
        return _yaml(text, f"{what} {path}")
    try:
        return json.loads(text)
    except ValueError as error:
        if path == "-" or not path.lower().endswith(".json"):
            try:
                return _yaml(text, f"{what} {path}")
            except CliError:
                pass
        raise CliError(f"{what} {path} is not valid JSON: {error}") from None


def _yaml(text: str, where: str) -> Any:
    try:
        import yaml  # optional: only YAML files need it
    except ImportError:
        raise CliError(f"reading YAML ({where}) needs PyYAML: pip install pyyaml, or write it as JSON") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CliError(f"{where} is not valid YAML: {error}") from None


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise CliError(f"{what} is not valid JSON: {error}") from None


def to_struct(data: Any, what: str) -> struct_pb2.Struct:
    if not isinstance(data, dict):
        raise CliError(f"{what} must be a JSON object, not {type(data).__name__}")
    struct = struct_pb2.Struct()
    try:
        json_format.ParseDict(data, struct)
    except (json_format.ParseError, TypeError, ValueError) as error:
        raise CliError(f"{what} cannot be sent as JSON: {error}") from None
    return struct


def to_value(data: Any, what: str) -> struct_pb2.Value:
    value = struct_pb2.Value()
    try:
        json_format.ParseDict(data, value)
    except (json_format.ParseError, TypeError, ValueError) as error:
        raise CliError(f"{what} cannot be sent as JSON: {error}") from None
    return value


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


def positive_seconds(text: str) -> float:
    """A number of seconds above 0 (for argparse `type=`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


def seconds(text: str) -> float:
    """`90`, `500ms`, `30s`, `5m`, `2h`, `1d` as seconds (for argparse `type=`)."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 5m, 2h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def duration(text: str) -> duration_pb2.Duration:
    result = duration_pb2.Duration()
    result.FromMilliseconds(int(seconds(text) * 1000))
    return result


def point_in_time(text: str) -> timestamp_pb2.Timestamp:
    """An RFC 3339 time (`2025-01-31T12:00:00Z`) or a duration ago (`2h`)."""
    result = timestamp_pb2.Timestamp()
    if _DURATION.match(text):
        moment = datetime.now(UTC).timestamp() - seconds(text)
        result.FromMilliseconds(int(moment * 1000))
        return result
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (an RFC 3339 time such as 2025-01-31T12:00:00Z, or 2h for 2 h ago)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    result.FromDatetime(parsed)
    return result


def header(text: str) -> tuple[str, str]:
    """`Name=value` or `Name: value`."""
    for separator in ("=", ":"):
        name, found, value = text.partition(separator)
        if found and name.strip():
            return name.strip(), value.strip()
    raise argparse.ArgumentTypeError(f"not a header: {text!r} (write Name=value)")
