"""References in a flow's input_schema: followed inside the schema only, never
fetched; loops that never descend into the input are refused when the flow is saved."""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import Listener

from hookline.server.errors import InvalidArgument
from hookline.server.execution.flowdef import (
    DEFAULT_TIMEOUT_SECONDS,
    FlowDefinition,
    JobFailure,
    parse_definition,
    run,
)

S = "flow.definition.input_schema"

OUTSIDE = "refers outside input_schema"
NOWHERE = "points at nothing inside input_schema"
NOT_A_SCHEMA = "not a subschema"
LOOP = "without descending into a part of the input"

# (schema, field of the violation, what its description says)
REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"$ref": "http://127.0.0.1:9/x.json"}, f"{S}.$ref", OUTSIDE),
    ({"$ref": "https://example.com/schema.json#/$defs/a"}, f"{S}.$ref", OUTSIDE),
    ({"$ref": "file:///etc/passwd"}, f"{S}.$ref", OUTSIDE),
    ({"properties": {"a": {"$ref": "other.json"}}}, f"{S}.properties.a.$ref", OUTSIDE),
    ({"properties": {"odd key": {"$ref": "//host/x"}}}, f'{S}.properties["odd key"].$ref', OUTSIDE),
    # The dialect's own meta-schema is not part of the flow's schema either.
    ({"$ref": "https://json-schema.org/draft/2020-12/schema"}, f"{S}.$ref", OUTSIDE),
    # An $id makes relative references resolve against it, still inside only.
    ({"$id": "https://example.com/root.json", "items": {"$ref": "b.json"}}, f"{S}.items.$ref", OUTSIDE),
    ({"$dynamicRef": "https://example.com/meta#node"}, f"{S}.$dynamicRef", OUTSIDE),
    ({"$defs": {"a": {"type": "string"}}, "items": {"$ref": "#/$defs/b"}}, f"{S}.items.$ref", NOWHERE),
    ({"items": {"$ref": "#missing"}}, f"{S}.items.$ref", NOWHERE),
    ({"properties": {"a": {"$ref": "#/properties"}}}, f"{S}.properties.a.$ref", NOT_A_SCHEMA),
    ({"allOf": [{"$ref": "#/allOf/first"}]}, f"{S}.allOf[0].$ref", "cannot be followed"),
    # Loops through keywords that apply to the same value never end.
    ({"$ref": "#"}, f"{S}.$ref", LOOP),
    (
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        f"{S}.$defs.a.$ref",
        LOOP,
    ),
    ({"anyOf": [{"type": "string"}, {"$ref": "#"}]}, f"{S}.anyOf[1].$ref", LOOP),
    ({"if": {"$ref": "#/then"}, "then": {"$ref": "#/if"}}, f"{S}.if.$ref", LOOP),
    ({"$defs": {"self": {"not": {"$ref": "#/$defs/self"}}}}, f"{S}.$defs.self.not.$ref", LOOP),
    ({"$dynamicAnchor": "node", "allOf": [{"$dynamicRef": "#node"}]}, f"{S}.allOf[0].$dynamicRef", LOOP),
    (
        {"$schema": "https://json-schema.org/draft/2019-09/schema", "oneOf": [{"$recursiveRef": "#"}]},
        f"{S}.oneOf[0].$recursiveRef",
        LOOP,
    ),
    (
        {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"a": {"$ref": "#/definitions/a"}}},
        f"{S}.definitions.a.$ref",
        LOOP,
    ),
]

# Recursion through a keyword that applies to a part of the input ends with the input.
ACCEPTED: list[dict[str, Any]] = [
    {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}},
    {"$defs": {"name": {"type": "string"}}, "properties": {"first": {"$ref": "#/$defs/name"}}},
    {"$defs": {"node": {"additionalProperties": {"$ref": "#/$defs/node"}}}, "$ref": "#/$defs/node"},
    {"$defs": {"a": {"$anchor": "word", "type": "string"}}, "items": {"$ref": "#word"}},
    {"$id": "https://example.com/root.json", "$defs": {"a": {"$id": "a.json"}}, "items": {"$ref": "a.json"}},
    {"$id": "https://example.com/root.json", "items": {"$ref": "https://example.com/root.json"}},
    {"$dynamicAnchor": "node", "properties": {"kids": {"items": {"$dynamicRef": "#node"}}}},
    {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$recursiveAnchor": True,
        "properties": {"next": {"$recursiveRef": "#"}},
    },
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"n": {}},
        "items": {"$ref": "#/definitions/n"},
    },
    {"properties": {"a": {"$ref": "#/properties/b"}, "b": True}},
    # Data that merely looks like a reference is data.
    {"const": {"$ref": "http://127.0.0.1:9/x.json"}},
]


def _violations(schema: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        parse_definition({"input_schema": schema})
    return {v.field: v.description for v in caught.value.violations}


@pytest.mark.parametrize(("schema", "field", "says"), REFUSED)
def test_references_that_cannot_be_followed_inside_the_schema_are_refused(
    schema: dict[str, Any], field: str, says: str
) -> None:
    found = _violations(schema)
    assert field in found, found
    assert says in found[field]


@pytest.mark.parametrize("schema", ACCEPTED)
def test_references_inside_the_schema_are_accepted(schema: dict[str, Any]) -> None:
    assert parse_definition({"input_schema": schema}).input_schema == schema


def test_the_violation_says_what_to_do_and_names_the_reference() -> None:
    found = _violations({"properties": {"a": {"$ref": "http://127.0.0.1:9/x.json"}}})
    description = found[f"{S}.properties.a.$ref"]
    assert "'http://127.0.0.1:9/x.json'" in description
    assert "nothing outside it is ever fetched" in description and "$defs" in description


def test_a_loop_names_the_references_it_goes_through() -> None:
    found = _violations({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}})
    [(field, description)] = found.items()
    assert field == f"{S}.$defs.a.$ref"
    assert "$ref '#/$defs/b'" in description and "through $ref '#/$defs/a'" in description
    assert "properties, items" in description


def test_every_reference_problem_is_reported_with_the_others() -> None:
    found = _violations({"items": {"$ref": "http://x/"}, "properties": {"a": {"$ref": "#/nope"}}, "not": {"$ref": "#"}})
    assert set(found) == {f"{S}.items.$ref", f"{S}.properties.a.$ref", f"{S}.not.$ref"}


def test_a_long_chain_of_references_is_no_problem() -> None:
    defs = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(1500)}
    defs["d1500"] = {"type": "string"}
    assert parse_definition({"input_schema": {"$defs": defs, "$ref": "#/$defs/d0"}}).input_schema
    defs["d1500"] = {"$ref": "#/$defs/d0"}
    assert list(_violations({"$defs": defs})) == [f"{S}.$defs.d0.$ref"]


# --------------------------------------------------------------------------- at run time


def _stored(schema: dict[str, Any]) -> FlowDefinition:
    """A definition as one stored before references were checked: not parsed."""
    return FlowDefinition(input_schema=schema, timeout_seconds=DEFAULT_TIMEOUT_SECONDS, steps=())


def _validate(definition: FlowDefinition, document: Any) -> JobFailure:
    started = time.monotonic()
    with pytest.raises(JobFailure) as caught:
        run(definition, document, cancel=threading.Event(), deadline=time.monotonic() + 30)
    assert time.monotonic() - started < 2
    return caught.value


def test_at_run_time_nothing_is_fetched_over_the_network(listener: Listener) -> None:
    url = f"http://127.0.0.1:{listener.port}/x.json"
    failure = _validate(_stored({"properties": {"a": {"$ref": url}}}), {"a": 1})
    assert failure.code == "JOB_VALIDATION_ERROR"
    assert url in failure.message and "only references inside it are followed" in failure.message
    assert listener.connections == []


def test_at_run_time_no_file_is_read(tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text('{"type": "string"}')  # were it read, 1 would not match it
    with warnings.catch_warnings():
        # jsonschema's own fetching warns as it goes; as an error here, that would
        # hide whether the file was read.
        warnings.simplefilter("ignore", DeprecationWarning)
        failure = _validate(_stored({"$ref": schema_file.as_uri()}), 1)
    assert failure.code == "JOB_VALIDATION_ERROR"
    assert "cannot be applied" in failure.message and "not of type" not in failure.message


def test_at_run_time_a_loop_of_references_ends_in_a_validation_error() -> None:
    failure = _validate(_stored({"$ref": "#"}), {})
    assert (failure.code, failure.message) == ("JOB_VALIDATION_ERROR", "input_schema refers to itself without end")
