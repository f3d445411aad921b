"""The storage contracts of the delivery worker and the job runner
(storage/queues.py): the database's implementations offer every operation of
their contract, with its parameters, each delegating to the storage function
of the same name, which sees the arguments as given; and a fault of the
database comes out of every operation as a DatabaseFault, anything else as it
was raised."""

from __future__ import annotations

import inspect
import sqlite3
from typing import Any

import pytest
from peewee import OperationalError

from hookline.server.storage import jobs, queues, sending
from hookline.server.storage.database import DatabaseFault

CONTRACTS = [
    (queues.DeliveryQueue, queues.DatabaseDeliveries, sending),
    (queues.JobQueue, queues.DatabaseJobs, jobs),
]
OPERATIONS = [
    (implementation, module, name)
    for contract, implementation, module in CONTRACTS
    for name, member in vars(contract).items()
    if inspect.isfunction(member) and not name.startswith("_")
]


@pytest.mark.parametrize(("contract", "implementation", "module"), CONTRACTS, ids=lambda v: getattr(v, "__name__", ""))
def test_the_database_implements_every_operation_of_its_contract_with_its_parameters(
    contract: type, implementation: type, module: Any
) -> None:
    for name, member in vars(contract).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            assert inspect.signature(getattr(implementation, name)) == inspect.signature(member), name
            assert callable(getattr(module, name)), f"{name} delegates to {module.__name__}.{name}"


def call(implementation: type, name: str) -> tuple[list[object], object]:
    """Call the operation with a distinct stand-in for each parameter: the
    stand-ins, in order, and what it returned."""
    parameters = list(inspect.signature(getattr(implementation, name)).parameters.values())[1:]
    given = {p.name: object() for p in parameters}
    positional = [given[p.name] for p in parameters if p.kind is not p.KEYWORD_ONLY]
    keywords = {p.name: given[p.name] for p in parameters if p.kind is p.KEYWORD_ONLY}
    return list(given.values()), getattr(implementation(), name)(*positional, **keywords)


@pytest.mark.parametrize(
    ("implementation", "module", "name"), OPERATIONS, ids=[f"{i.__name__}.{n}" for i, _, n in OPERATIONS]
)
def test_each_operation_hands_its_arguments_to_storage_and_its_result_back(
    implementation: type, module: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Any, ...]] = []
    result = object()

    def storage_function(*args: Any, **kwargs: Any) -> object:
        seen.append((*args, *kwargs.values()))
        return result

    monkeypatch.setattr(module, name, storage_function)
    given, returned = call(implementation, name)
    assert seen == [tuple(given)]
    returns_nothing = inspect.signature(getattr(implementation, name)).return_annotation == "None"
    assert returned is (None if returns_nothing else result)


def locked() -> OperationalError:
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = 5  # type: ignore[attr-defined]  # SQLITE_BUSY
    return OperationalError(error, *error.args)


@pytest.mark.parametrize(
    ("implementation", "module", "name"), OPERATIONS, ids=[f"{i.__name__}.{n}" for i, _, n in OPERATIONS]
)
def test_each_operation_raises_a_fault_of_the_database_as_a_database_fault_and_a_bug_as_it_is(
    implementation: type, module: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for raised, expected in ((locked(), DatabaseFault), (KeyError("a bug"), KeyError)):

        def storage_function(*args: Any, raised: Exception = raised, **kwargs: Any) -> object:
            raise raised

        monkeypatch.setattr(module, name, storage_function)
        with pytest.raises(expected) as caught:
            call(implementation, name)
        assert caught.value is raised or caught.value.__cause__ is raised
