"""JSON data to and from the protobuf `Value` and `Struct` messages that carry
job inputs, outputs and flow definitions."""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2

# Integers beyond this are not exact as doubles, so they stay floats.
_EXACT_INT = 2**53
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
    except json_format.ParseError as error:
        raise ValueError(str(error)) from None
    return message


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
