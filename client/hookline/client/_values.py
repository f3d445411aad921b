"""JSON data to and from the protobuf `Value` and `Struct` messages that carry
job inputs, outputs and flow definitions."""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2

# Integers beyond this are not exact as doubles, so they stay floats.
_EXACT_INT = 2**53
# The server's default --max-json-depth. Protobuf itself cannot carry JSON much
# deeper (it stops at 100 nested messages, and each JSON level takes two or three).
DEFAULT_MAX_JSON_DEPTH = 32
_Message = TypeVar("_Message", struct_pb2.Value, struct_pb2.Struct)


def to_value(data: Any) -> struct_pb2.Value:
    """JSON-shaped Python data (dict, list, str, number, bool, None) as a Value;
    ValueError for anything else."""
    return _parsed(data, struct_pb2.Value())


def to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    """A dict of JSON-shaped data as a Struct (a flow's definition, for one);
    ValueError for anything else."""
    return _parsed(data, struct_pb2.Struct())


def _parsed(data: Any, message: _Message) -> _Message:
    try:
        json_format.ParseDict(data, message)
    except (json_format.ParseError, RecursionError, TypeError) as error:
        depth = json_depth(data)
        if depth > DEFAULT_MAX_JSON_DEPTH:
            raise ValueError(too_deep(f"{depth} levels")) from None
        key = _non_text_key(data)
        if key is not None:  # YAML reads `1: x` with an int key; protobuf's TypeError does not say so
            raise ValueError(f"object keys must be text, not {key}") from None
        raise ValueError(str(error)) from None
    return message


def _non_text_key(data: Any) -> str | None:
    """The repr of the first object key in `data` that is not a string, if any."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return repr(key)
                pending.append(child)
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return None


def too_deep(how_deep: str) -> str:
    return f"nested {how_deep} deep; hookline takes JSON at most {DEFAULT_MAX_JSON_DEPTH} levels deep by default"


def json_depth(data: Any) -> int:
    """How deep `data` nests: 0 for a scalar, 1 for a flat object or array. Walked
    without recursion, so that no depth is too deep to measure."""
    deepest = 0
    pending = [(data, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            pending.extend((child, depth + 1) for child in item)
        else:
            continue
        deepest = max(deepest, depth + 1)
    return deepest


def from_value(message: struct_pb2.Value | struct_pb2.Struct | struct_pb2.ListValue) -> Any:
    """A Value, Struct or ListValue as plain Python data. Protobuf keeps every
    number a double; whole ones come back as ints, as they were sent."""
    return whole_numbers(json_format.MessageToDict(message))


def whole_numbers(data: Any) -> Any:
    """`data` with each float that holds a whole number exactly as an int."""
    if isinstance(data, float) and data.is_integer() and abs(data) < _EXACT_INT:
        return int(data)
    if isinstance(data, dict):
        return {key: whole_numbers(item) for key, item in data.items()}
    if isinstance(data, list):
        return [whole_numbers(item) for item in data]
    return data
