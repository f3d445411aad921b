"""JSON values: protobuf Struct/Value <-> Python, and the canonical event body bytes.

``dumps`` writes exactly what JavaScript's ``JSON.stringify(JSON.parse(text))``
reproduces, because many receivers verify a signature after parsing and
re-serialising the body:

* numbers as ECMAScript's Number::toString writes them: whole numbers without a
  fraction (``1.0`` -> ``1``, ``-0.0`` -> ``0``), shortest round-trip digits, and
  exponent form below 1e-6 or from 1e21 up (``1.5e-7``, ``1e+21``). A Python int
  is written as the double it becomes in JavaScript, so integers beyond 2**53 are
  inexact (``2**53 + 1`` is written ``9007199254740992``);
* strings as raw UTF-8 with JSON.stringify's escapes;
* object keys that are array indexes first, in ascending numeric order, then the
  other keys in insertion order (the order JavaScript enumerates them).

Depth: a scalar has depth 0, a top-level object or array depth 1, and each level
of nesting inside it one more. ``max_depth`` is the deepest level allowed.

Python data can hold what JSON text and protobuf cannot: JMESPath's `"\\ud800"`
literal is a string with an unpaired surrogate (no UTF-8 encoder takes it), and
its `NaN`, `1e400` or ``to_number`` are numbers no JSON number is. A job's output
passes ``check_representable`` before it is stored; what was stored before that
check existed is read back with ``stored_to_value``, which repairs rather than
raises, so that no stored row can make a read fail.
"""

from __future__ import annotations

import json
import math
import re
from json.encoder import encode_basestring
from typing import Any

from google.protobuf import struct_pb2

from hookline.server.errors import InvalidArgument

__all__ = [
    "check_depth",
    "check_representable",
    "check_size",
    "dumps",
    "path_text",
    "python_to_struct",
    "python_to_value",
    "stored_to_struct",
    "stored_to_value",
    "struct_to_python",
    "value_to_python",
]

_NOT_FINITE = "NaN and infinite numbers are not valid JSON"

# Largest array index in ECMAScript: 2**32 - 2.
_MAX_ARRAY_INDEX = 2**32 - 2
# Below this every whole double is an exact integer whose decimal digits are
# also its shortest round-trip form, so str(int(x)) is Number::toString.
_EXACT_INT_LIMIT = 2.0**53

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _too_deep(max_depth: int) -> str:
    return f"JSON nested deeper than {max_depth} levels"


# --- dumps ---------------------------------------------------------------------


def _format_number(x: float) -> str:
    """ECMAScript Number::toString for a finite double."""
    if x.is_integer() and -_EXACT_INT_LIMIT < x < _EXACT_INT_LIMIT:
        return str(int(x))  # also turns -0.0 into "0"
    if not math.isfinite(x):
        raise ValueError(_NOT_FINITE)
    text = repr(x)  # shortest round-trip digits
    if "e" not in text:
        # repr uses plain notation for 1e-4 <= |x| < 1e16, where ECMAScript does too.
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exp_text = text.partition("e")
    sign = ""
    if mantissa.startswith("-"):
        sign, mantissa = "-", mantissa[1:]
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    k = len(digits)
    # ECMAScript's n: the value is 0.<digits> * 10**n.
    n = int(exp_text) + 1
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    exponent = f"e+{e}" if e >= 0 else f"e-{-e}"
    if k == 1:
        return sign + digits + exponent
    return sign + digits[0] + "." + digits[1:] + exponent


def _is_array_index(key: str) -> bool:
    if key == "0":
        return True
    return key.isascii() and key.isdigit() and key[0] != "0" and len(key) <= 10 and int(key) <= _MAX_ARRAY_INDEX


def _ordered_items(obj: dict[Any, Any]) -> list[tuple[str, Any]]:
    indexes: list[tuple[int, str, Any]] = []
    others: list[tuple[str, Any]] = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
        if key and key[0] in "0123456789" and _is_array_index(key):
            indexes.append((int(key), key, value))
        else:
            others.append((key, value))
    if not indexes:
        return others
    indexes.sort(key=lambda item: item[0])
    return [(key, value) for _, key, value in indexes] + others


def _encode(obj: Any, out: list[str]) -> None:
    # Exact type checks first: bool is an int subclass and must not become 1/0.
    kind = type(obj)
    if kind is str:
        out.append(encode_basestring(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif kind is float:
        out.append(_format_number(obj))
    elif kind is int:
        try:
            out.append(_format_number(float(obj)))
        except OverflowError:
            raise ValueError("integer too large for a JSON number") from None
    elif isinstance(obj, dict):
        out.append("{")
        first = True
        for key, value in _ordered_items(obj):
            if not first:
                out.append(",")
            first = False
            out.append(encode_basestring(key))
            out.append(":")
            _encode(value, out)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        first = True
        for value in obj:
            if not first:
                out.append(",")
            first = False
            _encode(value, out)
        out.append("]")
    elif isinstance(obj, str):
        out.append(encode_basestring(str(obj)))
    elif isinstance(obj, int):  # int subclasses such as IntEnum
        _encode(int(obj), out)
    elif isinstance(obj, float):
        _encode(float(obj), out)
    else:
        raise TypeError(f"{type(obj).__name__} is not JSON data")


def _escape_surrogates(text: str) -> str:
    # Pair up surrogate halves that form a character, as JavaScript would see them,
    # then escape the lone ones the way JSON.stringify does.
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj``, byte for byte what JSON.stringify would write.

    Raises ValueError for NaN or infinite numbers and TypeError for anything that
    is not JSON data (dict with str keys, list/tuple, str, int, float, bool, None).
    Recursive: callers bound the depth first (check_depth or the converters).
    """
    out: list[str] = []
    _encode(obj, out)
    text = "".join(out)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Only strings with unpaired surrogates (e.g. from json.loads) get here.
        return _escape_surrogates(text).encode("utf-8")


# --- protobuf Struct/Value <-> Python -------------------------------------------


def value_to_python(value: struct_pb2.Value, *, field: str, max_depth: int) -> Any:
    """A Value as Python data: object keys sorted, numbers as float.

    Raises InvalidArgument on ``field`` for NaN/infinite numbers, an unset Value
    or nesting deeper than ``max_depth`` (a top-level object or array is depth 1).
    """
    return _value(value, field, max_depth, 0)


def struct_to_python(s: struct_pb2.Struct, *, field: str, max_depth: int) -> dict[str, Any]:
    """A Struct as a dict with sorted keys; the Struct itself is depth 1."""
    return _struct(s, field, max_depth, 1)


def _struct(s: struct_pb2.Struct, field: str, max_depth: int, depth: int) -> dict[str, Any]:
    if depth > max_depth:
        raise InvalidArgument.field(field, _too_deep(max_depth))
    # Protobuf maps have no order; sorting makes one Struct always convert alike.
    fields = s.fields
    return {key: _value(fields[key], field, max_depth, depth) for key in sorted(fields)}


def _value(value: struct_pb2.Value, field: str, max_depth: int, depth: int) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise InvalidArgument.field(field, _NOT_FINITE)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "null_value":
        return None
    if kind == "struct_value":
        return _struct(value.struct_value, field, max_depth, depth + 1)
    if kind == "list_value":
        if depth + 1 > max_depth:
            raise InvalidArgument.field(field, _too_deep(max_depth))
        return [_value(item, field, max_depth, depth + 1) for item in value.list_value.values]
    raise InvalidArgument.field(field, "a JSON value has none of its kinds set")


def python_to_value(obj: Any) -> struct_pb2.Value:
    """Python JSON data as a Value; ints become doubles (number_value).

    Raises ValueError for a number no double holds (NaN, infinities, huge ints),
    TypeError for what is not JSON data, UnicodeEncodeError for a string with
    an unpaired surrogate."""
    value = struct_pb2.Value()
    _fill_value(value, obj, salvage=False)
    return value


def python_to_struct(d: dict[str, Any]) -> struct_pb2.Struct:
    """A dict of Python JSON data as a Struct (raising as python_to_value does)."""
    s = struct_pb2.Struct()
    _fill_struct(s, d, salvage=False)
    return s


def stored_to_value(obj: Any) -> struct_pb2.Value:
    """Stored JSON data (as json.loads read it) as a Value, never raising for
    its content: an unpaired surrogate becomes U+FFFD, a number no double holds
    becomes null (what JSON.stringify writes for it), and a key that is not a
    string its text. For rows written before outputs were checked
    (check_representable): one such row must not make every read of it fail."""
    value = struct_pb2.Value()
    _fill_value(value, obj, salvage=True)
    return value


def stored_to_struct(d: dict[str, Any]) -> struct_pb2.Struct:
    """A stored JSON object as a Struct, repaired as stored_to_value does."""
    s = struct_pb2.Struct()
    _fill_struct(s, d, salvage=True)
    return s


def _fill_struct(s: struct_pb2.Struct, d: dict[Any, Any], *, salvage: bool) -> None:
    for key, item in d.items():
        if not isinstance(key, str):
            if not salvage:
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            key = str(key)
        try:
            target = s.fields[key]
        except UnicodeEncodeError:
            if not salvage:
                raise
            target = s.fields[_replace_surrogates(key)]
        _fill_value(target, item, salvage=salvage)


def _fill_value(value: struct_pb2.Value, obj: Any, *, salvage: bool) -> None:
    if obj is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(obj, bool):  # before int: bool is an int subclass
        value.bool_value = obj
    elif isinstance(obj, (int, float)):
        try:
            number = float(obj)
        except OverflowError:
            number = math.inf
            if not salvage:
                raise ValueError("integer too large for a JSON number") from None
        if not math.isfinite(number):
            if not salvage:
                raise ValueError(_NOT_FINITE)
            value.null_value = struct_pb2.NULL_VALUE
            return
        value.number_value = number
    elif isinstance(obj, str):
        try:
            value.string_value = obj
        except UnicodeEncodeError:
            if not salvage:
                raise
            value.string_value = _replace_surrogates(obj)
    elif isinstance(obj, dict):
        # Touching struct_value selects the kind even when the dict is empty.
        value.struct_value.SetInParent()
        _fill_struct(value.struct_value, obj, salvage=salvage)
    elif isinstance(obj, (list, tuple)):
        value.list_value.SetInParent()
        values = value.list_value.values
        for item in obj:
            _fill_value(values.add(), item, salvage=salvage)
    else:
        raise TypeError(f"{type(obj).__name__} is not JSON data")


def _replace_surrogates(text: str) -> str:
    # Halves that pair up are the character they stand for; the others become U+FFFD.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# --- what JSON text and protobuf can hold -----------------------------------------


def check_representable(obj: Any, *, field: str) -> None:
    """Raise InvalidArgument on the path (from ``field``, e.g. ``output.a[2]``)
    of the first part of ``obj`` that JSON text in UTF-8 and protobuf's Value
    cannot both hold: a string or key with an unpaired surrogate, NaN or an
    infinity, an integer beyond a double's range, a key that is not a string,
    anything that is not JSON data.

    Surrogate halves that pair up pass: dumps writes the character they make.
    Iterative, so depth costs no stack; bound the size first (check_size), since
    a value that shares its parts is walked part by part."""
    # Each entry: (item, where) with where = (the parent's where, key or index),
    # turned into a path only for the part that fails.
    stack: list[tuple[Any, Any]] = [(obj, None)]
    while stack:
        item, where = stack.pop()
        problem = None
        if isinstance(item, str):
            if (half := _unpaired_surrogate(item)) is not None:
                problem = _holds(half)
        elif item is None or isinstance(item, bool):
            pass
        elif isinstance(item, float):
            if not math.isfinite(item):
                shown = "NaN" if math.isnan(item) else "Infinity" if item > 0 else "-Infinity"
                problem = f"is {shown}, which JSON has no number for"
        elif isinstance(item, int):
            try:
                float(item)
            except OverflowError:
                problem = "is an integer too large for a JSON number (a double)"
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    problem = f"has a key of type {type(key).__name__}; JSON object keys are strings"
                elif (half := _unpaired_surrogate(key)) is not None:
                    problem = f"has a key that {_holds(half)}"
                if problem is not None:
                    break
                stack.append((child, (where, key)))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, (where, index)) for index, child in enumerate(item))
        else:
            problem = f"is a {type(item).__name__}, which is not JSON data"
        if problem is not None:
            parts: list[Any] = []
            while where is not None:
                where, part = where
                parts.append(part)
            raise InvalidArgument.field(path_text(field, reversed(parts)), problem)


# A surrogate pair, else a lone half: scanning with it finds the halves that pair
# up the way dumps (and JavaScript) pairs them.
_SURROGATE_OR_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")


def _unpaired_surrogate(text: str) -> str | None:
    if _LONE_SURROGATE.search(text) is None:
        return None
    return next((m.group() for m in _SURROGATE_OR_PAIR.finditer(text) if len(m.group()) == 1), None)


def _holds(half: str) -> str:
    return (
        f"holds the unpaired surrogate \\u{ord(half):04x}, which is not a Unicode character "
        "and cannot be stored or sent as UTF-8"
    )


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def path_text(root: str, parts: Any) -> str:
    """The path to a part of a JSON value as people write it: root.key[0]["odd key"]."""
    out = root
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"  # ASCII: an odd key's own surrogates are escaped
    return out


def check_depth(obj: Any, *, field: str, max_depth: int) -> None:
    """Raise InvalidArgument on ``field`` if ``obj`` nests deeper than ``max_depth``.

    Same rule as the converters: a scalar is depth 0, a top-level dict or list 1.
    """
    # Iterative, so a hostile document cannot exhaust the Python stack.
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        depth += 1
        if depth > max_depth:
            raise InvalidArgument.field(field, _too_deep(max_depth))
        stack.extend((child, depth) for child in children)


def check_size(obj: Any, *, field: str, max_bytes: int) -> None:
    """Raise InvalidArgument on ``field`` if ``obj`` is certainly longer than
    ``max_bytes`` as JSON, without writing it.

    It adds up a lower bound of each part's length (a string's characters and
    quotes, one byte per number, brackets, commas and colons) and stops as soon as
    that passes ``max_bytes``, so its cost is bounded by the limit, not by the
    value: a value that holds one list many times over (as JMESPath's ``[@, @]``
    builds) would otherwise be written out whole first. ``dumps`` gives the exact
    length of what passes.
    """
    total = 0
    stack = [obj]
    while stack:
        item = stack.pop()
        children: Any = ()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 1 + 2 * len(item)  # braces, and a colon and a comma (or the closing brace) per member
            total += sum(len(key) + 2 for key in item if isinstance(key, str))
            children = item.values()
        elif isinstance(item, (list, tuple)):
            total += 1 + max(1, len(item))  # brackets and commas
            children = item
        else:
            total += 1
        if total > max_bytes:
            raise InvalidArgument.field(
                field, f"is more than {max_bytes} bytes as JSON; the limit is {max_bytes} bytes"
            )
        stack.extend(children)
