from __future__ import annotations

import pytest

from hookline.server import ids


def test_ids_carry_their_prefix_and_sort_by_creation() -> None:
    made = [ids.new_id("job") for _ in range(2000)]
    assert all(i.startswith("job_") and len(i) == 30 for i in made)
    assert made == sorted(made)
    assert len(set(made)) == len(made)


@pytest.mark.parametrize("alias", ["a", "billing", "Order-sync.v2", "job_runner", "x" * 64])
def test_valid_aliases(alias: str) -> None:
    assert ids.alias_problem(alias) is None


@pytest.mark.parametrize(
    ("alias", "problem"),
    [
        ("", "is required"),
        ("1abc", "must start with a letter"),
        ("has space", "must start with a letter"),
        ("x" * 65, "at most 64"),
        ("ünïcode", "must start with a letter"),
    ],
)
def test_invalid_aliases(alias: str, problem: str) -> None:
    assert problem in (ids.alias_problem(alias) or "")


def test_an_alias_may_not_look_like_an_id() -> None:
    assert "form of an id" in (ids.alias_problem(ids.new_id("wh")) or "")
