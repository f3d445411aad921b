"""The names of job and delivery states, of job codes and of change kinds: the
text they store (the same as before they had names, so no migration), and the
one table each that converts them to and from the API's protobuf enums."""

from __future__ import annotations

from enum import StrEnum

import pytest

from hookline.server.api import convert
from hookline.server.states import ChangeKind, DeliveryState, JobCode, JobState
from hookline.v1 import jobs_pb2, webhooks_pb2

STORED_TEXT = [
    (JobState, {"WAITING", "RUNNING", "CANCELING", "COMPLETED", "ERROR", "CANCELED"}),
    (
        JobCode,
        set(
            "JOB_WAITING JOB_RUNNING JOB_SUCCESS JOB_USER_CANCELED JOB_SYSTEM_CANCELED"
            " JOB_EXECUTION_ERROR JOB_VALIDATION_ERROR JOB_TIMEOUT ZOMBIE_PROCESS".split()
        ),
    ),
    (DeliveryState, {"PENDING", "SENDING", "SUCCEEDED", "FAILED", "CANCELED"}),
    (
        ChangeKind,
        {"QUEUED", "ATTEMPT_STARTED", "ATTEMPT_RESULT", "RETRY_SCHEDULED", "SUCCEEDED", "FAILED", "CANCELED"},
    ),
]


@pytest.mark.parametrize(("names", "stored"), STORED_TEXT, ids=lambda v: getattr(v, "__name__", ""))
def test_each_name_stores_the_text_rows_already_hold(names: type[StrEnum], stored: set[str]) -> None:
    assert {member.value for member in names} == stored
    assert all(member.name == member.value for member in names)


# (the states, their table to the protobuf enum, the protobuf enum, the prefix of
# its value names, the table back, or None where nothing is read back)
TABLES = [
    (JobState, convert.JOB_STATES, jobs_pb2.JobState, "JOB_STATE_", convert.JOB_STATES_FROM_PROTO),
    (JobCode, convert.JOB_CODES, jobs_pb2.JobStatusCode, "", None),  # DecisionRules' codes, verbatim
    (
        DeliveryState,
        convert.DELIVERY_STATES,
        webhooks_pb2.DeliveryState,
        "DELIVERY_STATE_",
        convert.DELIVERY_STATES_FROM_PROTO,
    ),
    (ChangeKind, convert.CHANGE_KINDS, webhooks_pb2.DeliveryEventKind, "DELIVERY_EVENT_KIND_", None),
]


@pytest.mark.parametrize(("names", "table", "enum", "prefix", "back"), TABLES, ids=lambda v: getattr(v, "__name__", ""))
def test_every_name_converts_to_the_protobuf_value_of_the_same_name_and_back(
    names: type[StrEnum], table: dict, enum: object, prefix: str, back: dict | None
) -> None:
    assert set(table) == set(names)
    for member, value in table.items():
        assert enum.Name(value) == prefix + member.value  # type: ignore[attr-defined]
    if back is not None:
        specified = {v for v in enum.values() if v != 0}  # type: ignore[attr-defined]
        assert set(back) == specified
        assert all(table[state] == value for value, state in back.items())


def test_the_kinds_the_change_log_stores_are_all_kinds_a_stream_shows_but_sync() -> None:
    shown = {name for name in webhooks_pb2.DeliveryEventKind.keys() if not name.endswith(("_UNSPECIFIED", "_SYNC"))}
    assert {"DELIVERY_EVENT_KIND_" + kind for kind in ChangeKind} == shown


def test_a_stored_state_read_back_is_its_name() -> None:
    """Rows give plain text; records hand out the names."""
    from hookline.server.storage.records import Delivery

    delivery = Delivery(
        id="dlv_1", space_id="spc_1", webhook_id="wh_1", event_id="evt_1", event_type="WEBHOOK.TEST",
        job_id="", flow_id="", state=DeliveryState.PENDING, attempt_count=0, next_attempt_time=1,
        last_status_code=0, last_error="", create_time=1, update_time=1,
    )  # fmt: skip
    again = Delivery.from_snapshot(delivery.snapshot())
    assert again == delivery
    assert again.state is DeliveryState.PENDING


def test_a_stored_job_state_and_code_read_back_are_their_names() -> None:
    from types import SimpleNamespace

    from hookline.server.storage.records import Job

    row = SimpleNamespace(
        id="job_1", space_id="spc_1", flow_id="flow_1", flow_alias="f", flow_version=1, state="ERROR",
        code="ZOMBIE_PROCESS", message="", input="{}", output=None, correlation_id="", idempotency_key=None,
        create_time=1, claim_time=1, end_time=2,
    )  # fmt: skip
    job = Job.from_row(row)
    assert job.state is JobState.ERROR and job.code is JobCode.ZOMBIE_PROCESS
