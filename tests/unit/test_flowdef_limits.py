"""Flow definitions cannot make a job (or the server) spin: patterns run on RE2
and JMESPath expressions are bounded."""

from __future__ import annotations

import threading
import time

import pytest

from hookline.server.errors import InvalidArgument
from hookline.server.execution import flowdef


def _violations(raw: dict) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        flowdef.parse_definition(raw)
    return {v.field: v.description for v in caught.value.violations}


def test_a_backtracking_pattern_is_matched_in_linear_time() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a|a)+$"}}}
    definition = flowdef.parse_definition({"input_schema": schema})
    started = time.monotonic()
    with pytest.raises(flowdef.JobFailure) as caught:
        flowdef.run(definition, {"s": "a" * 40 + "!"}, cancel=threading.Event(), deadline=time.monotonic() + 60)
    assert caught.value.code == "JOB_VALIDATION_ERROR"
    assert time.monotonic() - started < 5  # Python's re would take hours on this input


def test_pattern_properties_run_on_re2_too() -> None:
    schema = {"type": "object", "patternProperties": {"^x-": {"type": "integer"}}}
    definition = flowdef.parse_definition({"input_schema": schema})
    with pytest.raises(flowdef.JobFailure, match="x-a"):
        flowdef.run(definition, {"x-a": "nope"}, cancel=threading.Event(), deadline=time.monotonic() + 5)
    assert flowdef.run(definition, {"x-a": 1, "y": "free"}, cancel=threading.Event(), deadline=time.monotonic() + 5)


def test_patterns_re2_cannot_run_are_refused_when_the_flow_is_saved() -> None:
    got = _violations({"input_schema": {"type": "string", "pattern": "(?=a)b"}})
    assert "RE2" in got["flow.definition.input_schema.pattern"]
    got = _violations({"input_schema": {"patternProperties": {"(a)\\1": {}}}})
    assert "RE2" in got["flow.definition.input_schema.patternProperties"]


def test_an_overlong_expression_is_refused() -> None:
    got = _violations({"steps": [{"transform": "a" * 5000}]})
    assert "the limit is 4096" in got["flow.definition.steps[0].transform"]


def test_a_deeply_nested_expression_is_refused_not_a_crash() -> None:
    got = _violations({"steps": [{"transform": "(" * 1500 + "a" + ")" * 1500}]})
    assert "nested too deeply" in got["flow.definition.steps[0].transform"]


def _unique_items(document: object) -> str | None:
    """The error message of validating `document` against uniqueItems, or None if it passes."""
    definition = flowdef.parse_definition({"input_schema": {"uniqueItems": True}})
    try:
        flowdef.run(definition, document, cancel=threading.Event(), deadline=time.monotonic() + 60)
    except flowdef.JobFailure as failure:
        assert failure.code == "JOB_VALIDATION_ERROR"
        return failure.message
    return None


def test_unique_items_over_thousands_of_objects_takes_linear_time() -> None:
    items = [{"id": i, "name": f"item {i}", "tags": ["a", {"b": i}]} for i in range(5000)]
    started = time.monotonic()
    assert _unique_items(items) is None
    assert "items 0 and 5000 are equal" in (
        _unique_items([*items, {"tags": ["a", {"b": 0}], "name": "item 0", "id": 0}]) or ""
    )
    assert time.monotonic() - started < 5  # pairwise comparison took 13 s for 3,000


@pytest.mark.parametrize(
    ("items", "unique"),
    [
        ([1, 1.0], False),  # JSON Schema compares numbers by value
        ([True, 1], True),  # but a boolean is not a number
        ([False, 0, None, "", [], {}], True),
        ([{"a": 1, "b": 2}, {"b": 2, "a": 1}], False),  # object keys have no order
        ([[1, 2], [2, 1]], True),  # array items do
        ([[1, [True]], [1.0, [True]]], False),
        ([{"a": [1]}, {"a": [1, 1]}], True),
        (["1", 1], True),
        ([{"a": None}, {"b": None}], True),
    ],
)
def test_unique_items_uses_json_schema_equality(items: list, unique: bool) -> None:
    assert (_unique_items(items) is None) == unique
