"""The names of the states jobs and deliveries move through, of the codes a
job's state comes with, and of the changes the delivery change log records
(DESIGN §3, §5, §6).

Each value is the text stored in the database, so these names read and write
the same rows as the bare strings they replace. The API's protobuf enums are
converted to and from these in one table each (api/convert.py)."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    WAITING = "WAITING"  # for a runner to claim it
    RUNNING = "RUNNING"
    CANCELING = "CANCELING"  # running, asked to stop: its runner ends it CANCELED
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    CANCELED = "CANCELED"


class JobCode(StrEnum):
    """The code beside a job's state: DecisionRules' status codes, verbatim."""

    JOB_WAITING = "JOB_WAITING"
    JOB_RUNNING = "JOB_RUNNING"  # also while CANCELING
    JOB_SUCCESS = "JOB_SUCCESS"
    JOB_USER_CANCELED = "JOB_USER_CANCELED"
    JOB_SYSTEM_CANCELED = "JOB_SYSTEM_CANCELED"  # its flow was deleted
    JOB_EXECUTION_ERROR = "JOB_EXECUTION_ERROR"  # a step failed, or the job's worker process died
    JOB_VALIDATION_ERROR = "JOB_VALIDATION_ERROR"  # input not fitting input_schema, or a definition gone invalid
    JOB_TIMEOUT = "JOB_TIMEOUT"
    ZOMBIE_PROCESS = "ZOMBIE_PROCESS"  # its runner stopped without ending it


# A job in one of these states has ended for good.
JOB_ENDED = (JobState.COMPLETED, JobState.ERROR, JobState.CANCELED)
# A job in one of these states is held by a runner, under a lease.
JOB_ACTIVE = (JobState.RUNNING, JobState.CANCELING)


class DeliveryState(StrEnum):
    PENDING = "PENDING"  # waiting for its next attempt to fall due
    SENDING = "SENDING"  # claimed by a worker, under a lease
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # no attempt left, or its webhook disabled; RetryDelivery can send it again
    CANCELED = "CANCELED"  # its webhook was deleted; final


# A delivery in one of these states may still be sent.
DELIVERY_UNFINISHED = (DeliveryState.PENDING, DeliveryState.SENDING)


class ChangeKind(StrEnum):
    """What a delivery change-log entry says happened (WatchDeliveries' kinds but SYNC)."""

    QUEUED = "QUEUED"
    ATTEMPT_STARTED = "ATTEMPT_STARTED"
    ATTEMPT_RESULT = "ATTEMPT_RESULT"
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
