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
