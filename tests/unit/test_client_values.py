"""The client's JSON <-> Value helpers: what goes in comes back out, whole
numbers as ints although protobuf keeps every number a double."""

from __future__ import annotations

import pytest

from hookline.client import from_value, to_struct, to_value


@pytest.mark.parametrize(
    "data",
    [
        {"total": 12.5, "count": 2},
        [1, 2.5, -3, 0],
        {"nested": {"list": [{"a": None}, True, "text"]}},
        "plain",
        None,
        2**53 - 1,
    ],
)
def test_data_comes_back_as_it_was_sent(data: object) -> None:
    back = from_value(to_value(data))
    assert back == data
    assert type(back) is type(data)


def test_numbers_too_large_to_be_exact_stay_floats() -> None:
    assert from_value(to_value(2**60)) == float(2**60)
    assert isinstance(from_value(to_value(2**60)), float)


def test_a_struct_round_trips() -> None:
    assert from_value(to_struct({"steps": [{"transform": "a"}]})) == {"steps": [{"transform": "a"}]}


def test_data_json_cannot_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected type"):
        to_value({"when": object()})
    with pytest.raises(ValueError, match="unexpected type"):
        to_struct({"when": {1, 2}})


def _nested(depth: int) -> object:
    data: object = 1
    for _ in range(depth):
        data = [data]
    return data


@pytest.mark.parametrize("depth", [100, 5_000])
def test_data_nested_too_deep_is_refused_with_the_limit(depth: int) -> None:
    """Protobuf said "Message too deep. Max recursion depth is 100" at best."""
    message = f"nested {depth} levels deep; hookline takes JSON at most 32 levels deep by default"
    with pytest.raises(ValueError, match=message):
        to_value(_nested(depth))
    with pytest.raises(ValueError, match=message):
        to_struct({"steps": [], "deep": _nested(depth - 1)})


def test_object_keys_that_are_not_text_are_named() -> None:
    """YAML reads `1: x` with an int key; protobuf raised a bare TypeError."""
    with pytest.raises(ValueError, match=r"^object keys must be text, not 1$"):
        to_value({"items": [{1: "x"}]})
    with pytest.raises(ValueError, match=r"^object keys must be text, not None$"):
        to_struct({None: 1})
