"""Tests for hookline.server.jsonvalue: JSON.stringify-identical bytes and Struct conversion."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from typing import Any

import pytest
from google.protobuf import struct_pb2

from hookline.server.errors import InvalidArgument, storable
from hookline.server.jsonvalue import (
    check_depth,
    check_representable,
    check_size,
    dumps,
    python_to_struct,
    python_to_value,
    stored_to_struct,
    stored_to_value,
    struct_to_python,
    value_to_python,
)

# (Python number, what JavaScript's Number::toString writes)
NUMBER_CASES: list[tuple[float | int, str]] = [
    (1.0, "1"),
    (-0.0, "0"),
    (0.0, "0"),
    (0.1, "0.1"),
    (-1.5, "-1.5"),
    (100.0, "100"),
    (123.456, "123.456"),
    (1e20, "100000000000000000000"),
    (1e21, "1e+21"),
    (-1e21, "-1e+21"),
    (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"),
    (0.000001, "0.000001"),
    (0.0001, "0.0001"),
    (1.2345e-5, "0.000012345"),
    (123456789012345680000.0, "123456789012345680000"),
    (1e16, "10000000000000000"),
    (2.0**64, "18446744073709552000"),
    (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (1.5e300, "1.5e+300"),
    (12345678.9, "12345678.9"),
    (0.30000000000000004, "0.30000000000000004"),
    (1, "1"),
    (-42, "-42"),
    (2**53, "9007199254740992"),
    (2**53 + 1, "9007199254740992"),  # inexact, as in JavaScript
    (10**21, "1e+21"),
]


@pytest.mark.parametrize(("number", "expected"), NUMBER_CASES)
def test_numbers(number: float, expected: str) -> None:
    assert dumps(number) == expected.encode()
    assert dumps([number]) == f"[{expected}]".encode()


def test_bools_and_null_are_not_numbers() -> None:
    assert dumps([True, False, None, 1, 0]) == b"[true,false,null,1,0]"
    assert dumps({"a": True}) == b'{"a":true}'


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, [1, {"x": math.nan}]])
def test_non_finite_numbers_raise(bad: Any) -> None:
    with pytest.raises(ValueError, match="NaN and infinite"):
        dumps(bad)


def test_huge_int_raises() -> None:
    with pytest.raises(ValueError, match="too large"):
        dumps(10**400)


def test_unsupported_types_raise() -> None:
    with pytest.raises(TypeError):
        dumps({1: "a"})
    with pytest.raises(TypeError):
        dumps({"a": object()})
    with pytest.raises(TypeError):
        dumps(b"bytes")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("\b\f\n\r\t", r'"\b\f\n\r\t"'),
        ("\x00\x01\x1f", r'"\u0000\u0001\u001f"'),
        ("\x7f", '"\x7f"'),
        ("/slash", '"/slash"'),
        ("žluťoučký kůň", '"žluťoučký kůň"'),
        ("emoji 😀", '"emoji 😀"'),
        ("\u2028\u2029", '"\u2028\u2029"'),
        ("\ud800", r'"\ud800"'),  # a lone surrogate is escaped, as JSON.stringify does
        ("\ud83d\ude00", '"😀"'),  # a surrogate pair is the character it stands for
    ],
)
def test_string_escapes(text: str, expected: str) -> None:
    assert dumps(text) == expected.encode("utf-8")


def test_key_order() -> None:
    doc = {"b": 1, "10": 2, "a": 3, "2": 4, "01": 5}
    assert dumps(doc) == b'{"2":4,"10":2,"b":1,"a":3,"01":5}'


def test_key_order_index_bounds() -> None:
    doc = {"x": 0, "4294967295": 1, "4294967294": 2, "0": 3, "-1": 4, "1.5": 5, "١": 6}
    # 2**32 - 2 is the largest array index; 2**32 - 1 is an ordinary key.
    assert dumps(doc) == ('{"0":3,"4294967294":2,"x":0,"4294967295":1,"-1":4,"1.5":5,"١":6}'.encode())


def test_compact_nested() -> None:
    doc = {"eventType": "JOB.COMPLETED", "data": {"list": [1, 2.5, {}, [], None]}, "e": ""}
    assert dumps(doc) == b'{"eventType":"JOB.COMPLETED","data":{"list":[1,2.5,{},[],null]},"e":""}'


def test_dumps_agrees_with_json_for_plain_data() -> None:
    doc = {"a": [1.5, "x", None, True], "b": {"c": "ü\n"}}
    assert json.loads(dumps(doc)) == doc


# Documents for the Node.js cross-check; dumps() of each must survive
# JSON.stringify(JSON.parse(...)) unchanged.
NODE_DOCUMENTS: list[Any] = [
    [number for number, _ in NUMBER_CASES],
    {"b": 1, "10": 2, "a": 3, "2": 4, "01": 5, "4294967294": 6, "4294967295": 7},
    {"text": 'quote " backslash \\ slash / \b\f\n\r\t \x00\x01\x1f\x7f'},
    {"unicode": "žluťoučký kůň, 日本語, ελληνικά", "emoji": "😀👍🏽👨‍👩‍👧", "\u2028": "\u2029"},
    {"lone": "\ud800 and \udfff", "pair": "\ud83d\ude00"},
    {"a": {"b": {"c": [[[{"d": [1, {"e": None}]}]]]}}},
    {"empty": {}, "list": [], "s": "", "t": True, "f": False, "n": None},
    {
        "eventType": "JOB.COMPLETED",
        "entityType": "JOB",
        "action": "COMPLETED",
        "data": {"jobId": "j1", "output": {"score": 0.1, "count": 3.0, "neg": -0.0}},
        "metadata": {"eventId": "evt_1", "timestamp": "2024-01-02T03:04:05.678Z"},
    },
    "just a string",
    12.0,
    None,
]


def test_matches_javascript_json_stringify() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed, so JSON.stringify cannot be compared")
    texts = [dumps(doc).decode("utf-8") for doc in NODE_DOCUMENTS]
    script = (
        "let input = '';"
        "process.stdin.setEncoding('utf8');"
        "process.stdin.on('data', c => input += c);"
        "process.stdin.on('end', () => {"
        "  const texts = JSON.parse(input);"
        "  process.stdout.write(JSON.stringify(texts.map(t => JSON.stringify(JSON.parse(t)))));"
        "});"
    )
    result = subprocess.run(
        [node, "-e", script],
        input=json.dumps(texts).encode(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert json.loads(result.stdout) == texts


# --- Struct / Value ---------------------------------------------------------------


def _nested(depth: int) -> Any:
    """A document whose depth is ``depth``: alternating objects and arrays."""
    doc: Any = "leaf"
    for level in range(depth):
        doc = {"k": doc} if level % 2 else [doc]
    return doc


def test_value_round_trip() -> None:
    doc = {"z": [1, 2.5, "s", None, True, {"y": {}}, []], "a": {"b": False}, "": ""}
    value = python_to_value(doc)
    back = value_to_python(value, field="input_data", max_depth=32)
    assert back == {"": "", "a": {"b": False}, "z": [1.0, 2.5, "s", None, True, {"y": {}}, []]}
    assert list(back) == ["", "a", "z"]  # sorted keys
    assert isinstance(back["z"][0], float)
    assert isinstance(back["a"]["b"], bool)


def test_struct_round_trip_and_sorted_keys() -> None:
    s = python_to_struct({"b": 1, "a": {"d": 2, "c": 3}, "10": 4, "2": 5})
    back = struct_to_python(s, field="input_data", max_depth=32)
    assert list(back) == ["10", "2", "a", "b"]
    assert list(back["a"]) == ["c", "d"]
    assert back == {"b": 1.0, "a": {"d": 2.0, "c": 3.0}, "10": 4.0, "2": 5.0}
    assert dumps(back) == b'{"2":5,"10":4,"a":{"c":3,"d":2},"b":1}'


def test_python_to_value_kinds() -> None:
    assert python_to_value(None).WhichOneof("kind") == "null_value"
    assert python_to_value(True).WhichOneof("kind") == "bool_value"
    assert python_to_value(3).number_value == 3.0
    assert python_to_value({}).WhichOneof("kind") == "struct_value"
    assert python_to_value([]).WhichOneof("kind") == "list_value"
    with pytest.raises(ValueError):
        python_to_value(math.nan)
    with pytest.raises(TypeError):
        python_to_value(object())


def test_scalars_convert() -> None:
    for obj in ["x", 1.5, True, None]:
        assert value_to_python(python_to_value(obj), field="f", max_depth=0) == obj


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_value_to_python_rejects_non_finite(bad: float) -> None:
    value = struct_pb2.Value()
    value.list_value.values.add().number_value = bad
    with pytest.raises(InvalidArgument) as info:
        value_to_python(value, field="input_data", max_depth=32)
    assert info.value.violations[0].field == "input_data"
    assert info.value.violations[0].description == "NaN and infinite numbers are not valid JSON"


def test_value_to_python_rejects_unset_value() -> None:
    with pytest.raises(InvalidArgument):
        value_to_python(struct_pb2.Value(), field="f", max_depth=32)


@pytest.mark.parametrize("max_depth", [1, 2, 3, 32])
def test_depth_limit(max_depth: int) -> None:
    ok, too_deep = _nested(max_depth), _nested(max_depth + 1)
    assert value_to_python(python_to_value(ok), field="f", max_depth=max_depth) == ok
    check_depth(ok, field="f", max_depth=max_depth)
    for convert in (
        lambda: value_to_python(python_to_value(too_deep), field="f", max_depth=max_depth),
        lambda: check_depth(too_deep, field="f", max_depth=max_depth),
    ):
        with pytest.raises(InvalidArgument) as info:
            convert()
        assert info.value.violations[0].field == "f"
        assert info.value.violations[0].description == (f"JSON nested deeper than {max_depth} levels")


def test_depth_definition() -> None:
    # A scalar is depth 0, a top-level object or array depth 1.
    check_depth("x", field="f", max_depth=0)
    check_depth({}, field="f", max_depth=1)
    check_depth({"a": 1, "b": [2]}, field="f", max_depth=2)
    with pytest.raises(InvalidArgument):
        check_depth([], field="f", max_depth=0)
    with pytest.raises(InvalidArgument):
        check_depth({"a": 1, "b": [2]}, field="f", max_depth=1)


def test_struct_depth() -> None:
    s = python_to_struct({"a": {"b": 1}})
    assert struct_to_python(s, field="f", max_depth=2) == {"a": {"b": 1.0}}
    with pytest.raises(InvalidArgument, match="deeper than 1 levels"):
        struct_to_python(s, field="f", max_depth=1)
    assert struct_to_python(struct_pb2.Struct(), field="f", max_depth=1) == {}


# --- check_size ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        "",
        "é" * 10,
        [],
        {},
        [1, 2, 3],
        {"a": [1, {"b": None}], "": "x", "0": True},
        [[], [[]], {"k": {}}],
        ['\n\t"\\', 1.5e-7, -0.0],
    ],
)
def test_check_size_never_refuses_what_fits(value: Any) -> None:
    exact = len(dumps(value))
    check_size(value, field="f", max_bytes=exact)  # a lower bound of the length: never more
    check_size(value, field="f", max_bytes=exact + 1)


def test_check_size_refuses_what_is_too_long() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_size({"a": "x" * 100}, field="output", max_bytes=100)
    assert [v.field for v in caught.value.violations] == ["output"]
    assert "more than 100 bytes" in caught.value.message


def test_check_size_stops_early_on_a_value_that_shares_its_parts() -> None:
    value: Any = {}
    for _ in range(60):  # 2**60 leaves as text, a few dozen lists in memory
        value = [value, value]
    with pytest.raises(InvalidArgument):
        check_size(value, field="output", max_bytes=1 << 20)


# --- check_representable: what JMESPath can make and JSON text cannot hold --------

# (value, the path of the violation, words its description must contain)
UNREPRESENTABLE: list[tuple[Any, str, str]] = [
    ("\ud800", "output", "unpaired surrogate \\ud800"),
    ("ok \udfff", "output", "unpaired surrogate \\udfff"),
    ("\ude00\ud83d", "output", "unpaired surrogate \\ude00"),  # low before high: no pair
    ({"a": ["x", "\udc00"]}, "output.a[1]", "unpaired surrogate \\udc00"),
    ({"\ud800": 1}, "output", "has a key that holds the unpaired surrogate \\ud800"),
    ({"odd key": {"\udbff": None}}, 'output["odd key"]', "key"),
    (math.nan, "output", "is NaN"),
    ([1, math.inf], "output[1]", "is Infinity"),
    ({"x": -math.inf}, "output.x", "is -Infinity"),
    (10**400, "output", "too large"),
    ([-(10**309)], "output[0]", "too large"),
    ({1: "a"}, "output", "key of type int"),
    ({"a": b"bytes"}, "output.a", "bytes"),
    ({"a": object()}, "output.a", "not JSON data"),
]


@pytest.mark.parametrize(("value", "path", "words"), UNREPRESENTABLE)
def test_check_representable_names_the_part_that_cannot_be_stored(value: Any, path: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_representable(value, field="output")
    [violation] = caught.value.violations
    assert violation.field == path
    assert words in violation.description


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -0.0,
        2**53 + 1,  # inexact, as documented, but a number
        10**308,
        1.7976931348623157e308,
        "",
        "\ud83d\ude00",  # a pair of halves is the character they make
        {"\ud83d\ude00": ["žluť", "\x00", "\uffff", "\U0010ffff"]},
        [[], {}, [{"a": [1, 2.5]}]],
    ],
)
def test_check_representable_passes_json_data(value: Any) -> None:
    check_representable(value, field="output")
    python_to_value(json.loads(dumps(value))).SerializeToString()  # stored, then read back


# (stored data as json.loads read it, what a read shows)
STORED: list[tuple[Any, Any]] = [
    ("\ud800", "\ufffd"),
    ("a\udc00b\ud83d\ude00", "a\ufffdb\U0001f600"),
    ({"\ud800": "x"}, {"\ufffd": "x"}),
    ([math.nan, math.inf, -math.inf, 10**400, 1.5], [None, None, None, None, 1.5]),
    ({"ok": {"n": 2, "s": "ü"}}, {"ok": {"n": 2.0, "s": "ü"}}),
]


@pytest.mark.parametrize(("stored", "shown"), STORED)
def test_stored_values_are_read_back_repaired(stored: Any, shown: Any) -> None:
    value = stored_to_value(stored)
    value.SerializeToString()  # what a read sends
    assert value_to_python(value, field="f", max_depth=32) == shown
    if isinstance(stored, dict):
        assert struct_to_python(stored_to_struct(stored), field="f", max_depth=32) == shown


def test_python_to_value_still_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(UnicodeEncodeError):
        python_to_value("\ud800")
    with pytest.raises(ValueError):
        python_to_value(10**400)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("a\x00b", "a\\u0000b"),
        ("\ud800", "\\ud800"),
        ("žluť 😀", "žluť 😀"),
    ],
)
def test_storable_escapes_what_no_database_holds(text: str, expected: str) -> None:
    assert storable(text) == expected
    storable(text).encode("utf-8")
