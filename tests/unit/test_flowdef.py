"""Flow definitions: validation on save, and the effect of each step at run time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from hookline.server.errors import InvalidArgument
from hookline.server.execution.flowdef import (
    DEFAULT_TIMEOUT_SECONDS,
    Canceled,
    FailIf,
    FlowDefinition,
    JobFailure,
    Sleep,
    Transform,
    output_json,
    output_source,
    parse_definition,
    run,
)

F = "flow.definition"


def violations(raw: Any) -> dict[str, str]:
    """Parse `raw`, expecting INVALID_ARGUMENT; return {field: description}."""
    with pytest.raises(InvalidArgument) as info:
        parse_definition(raw)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.violations, "an INVALID_ARGUMENT must name its fields"
    return {v.field: v.description for v in info.value.violations}


def run_steps(*steps: dict[str, Any], document: Any = None, **definition: Any) -> Any:
    flow = parse_definition({"steps": list(steps), **definition})
    return run(flow, document, cancel=threading.Event(), deadline=time.monotonic() + 30)


@pytest.fixture
def cancel() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a sleeping run behind


# --------------------------------------------------------------------------- parsing


def test_parse_happy_path() -> None:
    flow = parse_definition(
        {
            "input_schema": {"type": "object", "required": ["n"]},
            "timeout_seconds": 30.0,
            "steps": [
                {"transform": "{n: n, doubled: [n, n]}"},
                {"sleep_ms": 100.0},  # Struct numbers are floats
                {"fail_if": "n > `10`", "message": "too big"},
                {"fail_if": "n == `3`"},
            ],
        }
    )
    assert isinstance(flow, FlowDefinition)
    assert flow.input_schema == {"type": "object", "required": ["n"]}
    assert flow.timeout_seconds == 30.0
    transform, sleep, fail_if, fail_default = flow.steps
    assert isinstance(transform, Transform) and transform.source == "{n: n, doubled: [n, n]}"
    assert transform.expression.search({"n": 1}) == {"n": 1, "doubled": [1, 1]}
    assert sleep == Sleep(100) and isinstance(sleep.ms, int)
    assert isinstance(fail_if, FailIf) and fail_if.message == "too big" and fail_if.source == "n > `10`"
    assert isinstance(fail_default, FailIf) and fail_default.message == "fail_if condition matched"


def test_parse_defaults() -> None:
    flow = parse_definition({})
    assert flow == FlowDefinition(input_schema=None, timeout_seconds=DEFAULT_TIMEOUT_SECONDS, steps=())
    assert DEFAULT_TIMEOUT_SECONDS == 3600.0


def test_custom_field_prefix() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_definition({"steps": [{"transform": "a.["}]}, field="definition")
    assert [v.field for v in info.value.violations] == ["definition.steps[0].transform"]


def test_bad_jmespath_names_the_step_and_the_parse_error() -> None:
    found = violations({"steps": [{"transform": "a"}, {"sleep_ms": 1}, {"transform": "a.["}]})
    assert list(found) == [f"{F}.steps[2].transform"]
    assert "'a.['" in found[f"{F}.steps[2].transform"]
    assert "incomplete expression" in found[f"{F}.steps[2].transform"]


def test_bad_jmespath_in_fail_if() -> None:
    found = violations({"steps": [{"fail_if": "a[?b ==]"}]})
    description = found[f"{F}.steps[0].fail_if"]
    assert "invalid token" in description and "column 7" in description
    assert "\n" not in description


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("nope(@)", "unknown function nope()"),
        ("length(a, b)", "length() takes 1 argument, got 2"),
        ("merge()", "merge() takes at least 1 argument, got 0"),
        ("`{bad`", "literal must be valid JSON"),
        ("", "non-empty"),
        ("   ", "non-empty"),
    ],
)
def test_expressions_are_fully_checked_at_parse_time(expression: str, expected: str) -> None:
    found = violations({"steps": [{"transform": expression}]})
    assert expected in found[f"{F}.steps[0].transform"]


def test_non_string_expression() -> None:
    found = violations({"steps": [{"transform": 3.0}, {"fail_if": None}]})
    assert "got number" in found[f"{F}.steps[0].transform"]
    assert "got null" in found[f"{F}.steps[1].fail_if"]


def test_unknown_step_kind() -> None:
    found = violations({"steps": [{"http": "https://example.com"}]})
    assert list(found) == [f"{F}.steps[0].http"]
    assert "transform, sleep_ms, fail_if" in found[f"{F}.steps[0].http"]


def test_empty_step_and_non_object_step() -> None:
    found = violations({"steps": [{}, "transform"]})
    assert "exactly one of" in found[f"{F}.steps[0]"]
    assert "got string" in found[f"{F}.steps[1]"]


def test_two_kinds_in_one_step() -> None:
    found = violations({"steps": [{"transform": "a", "sleep_ms": 5}]})
    assert list(found) == [f"{F}.steps[0]"]
    assert "transform and sleep_ms" in found[f"{F}.steps[0]"]


def test_negative_sleep() -> None:
    found = violations({"steps": [{"sleep_ms": -1.0}]})
    assert "between 0 and 86400000" in found[f"{F}.steps[0].sleep_ms"]


def test_fractional_sleep() -> None:
    found = violations({"steps": [{"sleep_ms": 100.5}]})
    assert "whole number" in found[f"{F}.steps[0].sleep_ms"]


@pytest.mark.parametrize("value", [86_400_001.0, "100", True, float("inf")])
def test_other_bad_sleeps(value: Any) -> None:
    assert f"{F}.steps[0].sleep_ms" in violations({"steps": [{"sleep_ms": value}]})


def test_bad_schema_names_the_path_inside_it() -> None:
    found = violations({"input_schema": {"type": "object", "properties": {"n": {"type": "integr"}}}})
    assert list(found) == [f"{F}.input_schema.properties.n.type"]
    assert "not a valid JSON Schema" in found[f"{F}.input_schema.properties.n.type"]


def test_every_schema_problem_is_reported() -> None:
    found = violations({"input_schema": {"minimum": "x", "properties": {"s": {"pattern": "("}}}})
    assert set(found) == {f"{F}.input_schema.minimum", f"{F}.input_schema.properties.s.pattern"}


@pytest.mark.parametrize("schema", [[], "object", 1.0])
def test_schema_must_be_an_object(schema: Any) -> None:
    assert "must be a JSON Schema object" in violations({"input_schema": schema})[f"{F}.input_schema"]


def test_unknown_schema_dialect() -> None:
    found = violations({"input_schema": {"$schema": "https://example.com/my-draft"}})
    assert "unknown JSON Schema dialect" in found[f"{F}.input_schema.$schema"]


def test_known_schema_dialect_is_accepted() -> None:
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}
    assert parse_definition({"input_schema": schema}).input_schema == schema


@pytest.mark.parametrize("timeout", [0.0, -5.0, 86_400.5, "60", float("nan"), False])
def test_bad_timeout(timeout: Any) -> None:
    assert f"{F}.timeout_seconds" in violations({"timeout_seconds": timeout})


def test_timeout_bounds_are_inclusive_at_the_top() -> None:
    assert parse_definition({"timeout_seconds": 86_400.0}).timeout_seconds == 86_400.0
    assert parse_definition({"timeout_seconds": 0.5}).timeout_seconds == 0.5


def test_unknown_top_level_key() -> None:
    found = violations({"steps": [], "retries": 3.0})
    assert list(found) == [f"{F}.retries"]
    assert "input_schema, timeout_seconds, steps" in found[f"{F}.retries"]


def test_message_without_fail_if() -> None:
    found = violations({"steps": [{"transform": "a", "message": "why"}]})
    assert list(found) == [f"{F}.steps[0].message"]
    assert "only allowed with fail_if" in found[f"{F}.steps[0].message"]


def test_message_must_be_a_string() -> None:
    assert f"{F}.steps[0].message" in violations({"steps": [{"fail_if": "a", "message": 1.0}]})


def test_steps_must_be_a_list_of_at_most_100() -> None:
    assert "must be an array" in violations({"steps": {"transform": "a"}})[f"{F}.steps"]
    parse_definition({"steps": [{"sleep_ms": 0.0}] * 100})
    assert "at most 100" in violations({"steps": [{"sleep_ms": 0.0}] * 101})[f"{F}.steps"]


def test_definition_must_be_an_object() -> None:
    assert "must be a JSON object" in violations([])[F]


def test_all_violations_are_collected() -> None:
    found = violations(
        {
            "bogus": 1.0,
            "timeout_seconds": -1.0,
            "input_schema": "nope",
            "steps": [
                {"transform": "ok"},
                {"transform": "a.["},
                {"sleep_ms": 1.5},
                {"fail_if": "nope()", "message": "m"},
                {"sleep_ms": 1.0, "message": "m"},
            ],
        }
    )
    assert set(found) == {
        f"{F}.bogus",
        f"{F}.timeout_seconds",
        f"{F}.input_schema",
        f"{F}.steps[1].transform",
        f"{F}.steps[2].sleep_ms",
        f"{F}.steps[3].fail_if",
        f"{F}.steps[4].message",
    }


def test_message_reads_on_its_own() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_definition({"steps": [{"sleep_ms": -1.0}], "extra": 1.0})
    assert f"{F}.steps[0].sleep_ms:" in info.value.message
    assert f"{F}.extra:" in info.value.message


# --------------------------------------------------------------------------- running


def test_no_steps_returns_the_input() -> None:
    assert run_steps(document={"a": 1.0}) == {"a": 1.0}


def test_transform_reshapes_the_document() -> None:
    out = run_steps(
        {"transform": "{name: user.name, tags: items[].tag}"},
        {"transform": "merge(@, {count: length(tags)})"},
        document={"user": {"name": "ada"}, "items": [{"tag": "x"}, {"tag": "y"}]},
    )
    assert out == {"name": "ada", "tags": ["x", "y"], "count": 2}
    assert type(out) is dict


@pytest.mark.parametrize(
    ("document", "matched"),
    [
        (0, True),  # 0 is true in JMESPath
        (0.0, True),
        ("x", True),
        ([0], True),
        ({"k": None}, True),
        (True, True),
        (False, False),
        (None, False),
        ("", False),
        ([], False),
        ({}, False),
    ],
)
def test_fail_if_uses_jmespath_truthiness(document: Any, matched: bool) -> None:
    definition = {"steps": [{"fail_if": "@", "message": "matched"}]}
    flow = parse_definition(definition)
    if matched:
        with pytest.raises(JobFailure) as info:
            run(flow, document, cancel=threading.Event(), deadline=time.monotonic() + 30)
        assert (info.value.code, info.value.message) == ("JOB_EXECUTION_ERROR", "matched")
    else:
        assert run(flow, document, cancel=threading.Event(), deadline=time.monotonic() + 30) == document


def test_fail_if_default_message_and_later_steps_do_not_run() -> None:
    with pytest.raises(JobFailure) as info:
        run_steps({"fail_if": "n > `1`"}, {"transform": "bogus"}, document={"n": 2})
    assert info.value.message == "fail_if condition matched"
    assert run_steps({"fail_if": "n > `1`"}, {"transform": "n"}, document={"n": 1}) == 1


def test_sleep_waits_roughly_the_time() -> None:
    started = time.monotonic()
    assert run_steps({"sleep_ms": 200.0}, document="same") == "same"
    assert 0.19 <= time.monotonic() - started < 1.0


def test_cancel_interrupts_a_long_sleep(cancel: threading.Event) -> None:
    flow = parse_definition({"steps": [{"sleep_ms": 60_000.0}, {"transform": "never"}]})
    timer = threading.Timer(0.2, cancel.set)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(Canceled):
            run(flow, {}, cancel=cancel, deadline=time.monotonic() + 120)
        # Woken within 0.1 s of the cancel, not at the end of the minute.
        assert time.monotonic() - started < 0.2 + 0.1
    finally:
        timer.cancel()


def test_cancel_before_a_step_stops_the_run(cancel: threading.Event) -> None:
    cancel.set()
    flow = parse_definition({"steps": [{"transform": "a"}]})
    with pytest.raises(Canceled):
        run(flow, {"a": 1}, cancel=cancel, deadline=time.monotonic() + 30)


def test_deadline_cuts_a_sleep_short_with_job_timeout(cancel: threading.Event) -> None:
    flow = parse_definition({"timeout_seconds": 0.2, "steps": [{"sleep_ms": 60_000.0}]})
    started = time.monotonic()
    with pytest.raises(JobFailure) as info:
        run(flow, {}, cancel=cancel, deadline=started + flow.timeout_seconds)
    assert 0.19 <= time.monotonic() - started < 1.0
    assert info.value.code == "JOB_TIMEOUT"
    assert "timed out after 0.2 s" in info.value.message


def test_deadline_checked_before_each_step(cancel: threading.Event) -> None:
    now = [100.0]
    flow = parse_definition({"steps": [{"transform": "a"}, {"transform": "b"}]})

    def clock() -> float:
        now[0] += 1.0  # each look at the clock moves time on
        return now[0]

    with pytest.raises(JobFailure) as info:
        run(flow, {"a": {"b": 1}}, cancel=cancel, deadline=101.5, clock=clock)
    assert info.value.code == "JOB_TIMEOUT"


def test_past_deadline_fails_before_the_first_step(cancel: threading.Event) -> None:
    flow = parse_definition({"steps": [{"transform": "a"}]})
    with pytest.raises(JobFailure) as info:
        run(flow, {}, cancel=cancel, deadline=time.monotonic() - 1)
    assert info.value.code == "JOB_TIMEOUT"


def test_sleep_that_ends_before_the_deadline_continues(cancel: threading.Event) -> None:
    flow = parse_definition({"steps": [{"sleep_ms": 10.0}, {"transform": "a"}]})
    assert run(flow, {"a": 5.0}, cancel=cancel, deadline=time.monotonic() + 30) == 5.0


def test_schema_mismatch_is_job_validation_error(cancel: threading.Event) -> None:
    flow = parse_definition(
        {
            "input_schema": {
                "type": "object",
                "properties": {"user": {"type": "object", "properties": {"age": {"type": "integer"}}}},
            },
            "steps": [{"transform": "user"}],
        }
    )
    with pytest.raises(JobFailure) as info:
        run(flow, {"user": {"age": "old"}}, cancel=cancel, deadline=time.monotonic() + 30)
    assert info.value.code == "JOB_VALIDATION_ERROR"
    assert "input.user.age" in info.value.message
    assert "'old' is not of type 'integer'" in info.value.message
    # A matching input runs; Struct numbers are floats but 30.0 is an integer to JSON Schema.
    assert run(flow, {"user": {"age": 30.0}}, cancel=cancel, deadline=time.monotonic() + 30) == {"age": 30.0}


def test_schema_mismatch_at_the_root(cancel: threading.Event) -> None:
    flow = parse_definition({"input_schema": {"type": "object", "required": ["id"]}})
    with pytest.raises(JobFailure) as info:
        run(flow, {}, cancel=cancel, deadline=time.monotonic() + 30)
    assert info.value.code == "JOB_VALIDATION_ERROR"
    assert "'id' is a required property" in info.value.message


def test_jmespath_runtime_type_error_is_job_execution_error(cancel: threading.Event) -> None:
    flow = parse_definition({"steps": [{"transform": "a"}, {"transform": "length(@)"}]})
    with pytest.raises(JobFailure) as info:
        run(flow, {"a": 5.0}, cancel=cancel, deadline=time.monotonic() + 30)
    assert info.value.code == "JOB_EXECUTION_ERROR"
    assert info.value.message.startswith("step 1: ")
    assert "length()" in info.value.message


def test_jmespath_runtime_error_in_fail_if(cancel: threading.Event) -> None:
    flow = parse_definition({"steps": [{"fail_if": "abs(name)"}]})
    with pytest.raises(JobFailure) as info:
        run(flow, {"name": "x"}, cancel=cancel, deadline=time.monotonic() + 30)
    assert info.value.code == "JOB_EXECUTION_ERROR"
    assert info.value.message.startswith("step 0: ")


# (steps, input, the start of the job's message): outputs that JSON text and
# protobuf cannot hold end the job naming the step that made them.
UNSTORABLE_OUTPUTS: list[tuple[list[dict[str, Any]], Any, str]] = [
    ([{"transform": '`"\\ud800"`'}], None, "step 0: output: holds the unpaired surrogate \\ud800"),
    ([{"transform": '{"\\udc00": @}'}], 1, "step 0: output: has a key that holds the unpaired surrogate \\udc00"),
    ([{"transform": "@"}, {"transform": '{a: [`1`, `"x\\ud800"`]}'}], {}, "step 1: output.a[1]: holds"),
    ([{"transform": "`NaN`"}, {"fail_if": "`false`"}], None, "step 0: output: is NaN"),
    ([{"transform": "to_number('1e999')"}], None, "step 0: output: is Infinity"),
    ([{"transform": "sum(`[1e308, 1e308]`)"}], None, "step 0: output: is Infinity"),
    ([{"transform": "to_number('" + "9" * 400 + "')"}], None, "step 0: output: is an integer too large"),
    ([{"transform": "{deep: @}"}], {"a": [[[[[]]]]]}, "step 0: output: JSON nested deeper than 6 levels"),
    ([{"transform": "[@, @]"}], "x" * 600, "step 0: output: is more than 1000 bytes"),
    ([], "x" * 2000, "the input: output: is more than 1000 bytes"),
]


@pytest.mark.parametrize(("steps", "document", "message"), UNSTORABLE_OUTPUTS)
def test_an_output_that_cannot_be_stored_fails_naming_its_step(
    steps: list[dict[str, Any]], document: Any, message: str
) -> None:
    definition = parse_definition({"steps": steps})
    output = run(definition, document, cancel=threading.Event(), deadline=time.monotonic() + 30)
    with pytest.raises(JobFailure) as info:
        output_json(output, source=output_source(definition), max_bytes=1000, max_depth=6)
    assert info.value.code == "JOB_EXECUTION_ERROR"
    assert info.value.message.startswith(message), info.value.message
    info.value.message.encode("utf-8")  # the message itself can be stored


def test_paired_surrogate_halves_make_their_character() -> None:
    definition = parse_definition({"steps": [{"transform": """join('', `["\\ud83d", "\\ude00"]`)"""}]})
    output = run(definition, None, cancel=threading.Event(), deadline=time.monotonic() + 30)
    assert output_json(output, source="step 0", max_bytes=1000, max_depth=6) == '"\U0001f600"'


@pytest.mark.parametrize(
    ("expression", "document"), [("abs(@)", "\0 and \ud800"), ("abs(@)", {"k": "\udfff"}), ("length(@)", 1.5)]
)
def test_an_error_quoting_the_document_can_be_stored(expression: str, document: Any) -> None:
    definition = parse_definition({"steps": [{"fail_if": expression}]})
    with pytest.raises(JobFailure) as info:
        run(definition, document, cancel=threading.Event(), deadline=time.monotonic() + 30)
    assert info.value.message.startswith("step 0: ")
    assert "\0" not in info.value.message
    info.value.message.encode("utf-8")


def test_a_function_that_cannot_compute_fails_the_step(cancel: threading.Event) -> None:
    # jmespath's sum() adds in Python: a float and an integer past a double's range overflow.
    definition = parse_definition({"steps": [{"transform": "@"}, {"transform": "sum(@)"}]})
    with pytest.raises(JobFailure) as info:
        run(definition, [1e308, 10**400], cancel=cancel, deadline=time.monotonic() + 30)
    assert info.value.code == "JOB_EXECUTION_ERROR"
    assert info.value.message == "step 1: cannot compute its value: int too large to convert to float"
