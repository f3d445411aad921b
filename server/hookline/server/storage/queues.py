"""What the delivery worker and the job runner need of storage: two small
contracts, DeliveryQueue and JobQueue, and the database's implementation of
each (DatabaseDeliveries, DatabaseJobs).

The worker and the runner are typed against the contracts and take an
implementation as an argument, the database's by default, so a test can hand
them one of its own (one that fails when the test says, say). The database's
implementations only delegate to sending.py and jobs.py, where the contract of
each operation is spelled out in full; what they add is one exception for "try
again": a fault of the database itself (unreachable, locked or busy, out of
connections, a serialization failure, its disk full) comes out as
database.DatabaseFault, whatever the driver raised."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from . import jobs, sending
from .database import raising_database_faults
from .records import ClaimedJob, Job, JobEnd, SendTask
from .sending import AttemptOutcome, Decide, Recorded

# How a claim picks among due deliveries: given the candidates, (delivery id,
# webhook id) earliest due first, and how many it may take; the ids it takes.
Choose = Callable[[Sequence[tuple[str, str]], int], list[str]]


class DeliveryQueue(Protocol):
    """The deliveries' side of storage the delivery worker uses. Times are ms
    since the epoch; each call is one transaction."""

    def claim_due(
        self, now: int, capacity: int, lease_ms: int, choose: Choose, per_webhook_cap: int, blocked: Sequence[str]
    ) -> list[SendTask]:
        """Claim up to `capacity` due deliveries (`choose` picks which): SENDING until now + `lease_ms`."""
        ...

    def record_outcomes(self, outcomes: Sequence[AttemptOutcome], now: int, decide: Decide) -> Recorded:
        """Store each attempt; move its delivery (while its lease holds) and webhook on as `decide` says."""
        ...

    def release(self, delivery_ids: Sequence[str], now: int) -> None:
        """Give these SENDING deliveries back unsent: PENDING, due `now`."""
        ...

    def release_expired(self, now: int, held: Sequence[str]) -> int:
        """Give back SENDING deliveries whose lease ended before `now`, but `held`: due now; how many."""
        ...

    def next_due_time(self, skip_webhooks: Sequence[str]) -> int | None:
        """When the next PENDING delivery of a webhook not in `skip_webhooks` falls due; None if none waits."""
        ...

    def expedite_retries(self, webhook_id: str, now: int, limit: int) -> int:
        """Make up to `limit` of a recovered webhook's waiting retries due `now`; how many."""
        ...


class JobQueue(Protocol):
    """The jobs' side of storage the job runner uses. Times are ms since the
    epoch; each call is one transaction."""

    def claim(self, now: int, limit: int, lease_ms: int, *, queued: Sequence[str] = ()) -> list[ClaimedJob]:
        """Claim up to `limit` WAITING jobs, `queued` first: RUNNING until now + `lease_ms`, with definitions."""
        ...

    def waiting(self, limit: int, exclude: Collection[str] = ()) -> list[str]:
        """The ids of up to `limit` WAITING jobs, oldest first, but `exclude`; claims nothing."""
        ...

    def renew(self, job_ids: Sequence[str], now: int, lease_ms: int) -> set[str]:
        """Extend these jobs' leases to now + `lease_ms`; those whose runner must stop (canceled, or ended)."""
        ...

    def finish_and_claim(
        self, ends: Sequence[JobEnd], next_ids: Sequence[str], now: int, lease_ms: int
    ) -> tuple[list[Job | None], list[ClaimedJob | None]]:
        """End these jobs (a cancel wins) and claim those of `next_ids` still WAITING; None where not."""
        ...

    def reap_expired(self, now: int) -> list[Job]:
        """End the active jobs whose lease ended before `now`: ERROR/ZOMBIE_PROCESS, or CANCELED."""
        ...

    def release(self, job_id: str) -> None:
        """Give a RUNNING job back unfinished: WAITING again, unclaimed."""
        ...


class DatabaseDeliveries:
    """DeliveryQueue on the database (storage/sending.py)."""

    def claim_due(
        self, now: int, capacity: int, lease_ms: int, choose: Choose, per_webhook_cap: int, blocked: Sequence[str]
    ) -> list[SendTask]:
        with raising_database_faults():
            return sending.claim_due(now, capacity, lease_ms, choose, per_webhook_cap, blocked)

    def record_outcomes(self, outcomes: Sequence[AttemptOutcome], now: int, decide: Decide) -> Recorded:
        with raising_database_faults():
            return sending.record_outcomes(outcomes, now, decide)

    def release(self, delivery_ids: Sequence[str], now: int) -> None:
        with raising_database_faults():
            sending.release(delivery_ids, now)

    def release_expired(self, now: int, held: Sequence[str]) -> int:
        with raising_database_faults():
            return sending.release_expired(now, held)

    def next_due_time(self, skip_webhooks: Sequence[str]) -> int | None:
        with raising_database_faults():
            return sending.next_due_time(skip_webhooks)

    def expedite_retries(self, webhook_id: str, now: int, limit: int) -> int:
        with raising_database_faults():
            return sending.expedite_retries(webhook_id, now, limit)


class DatabaseJobs:
    """JobQueue on the database (storage/jobs.py)."""

    def claim(self, now: int, limit: int, lease_ms: int, *, queued: Sequence[str] = ()) -> list[ClaimedJob]:
        with raising_database_faults():
            return jobs.claim(now, limit, lease_ms, queued=queued)

    def waiting(self, limit: int, exclude: Collection[str] = ()) -> list[str]:
        with raising_database_faults():
            return jobs.waiting(limit, exclude)

    def renew(self, job_ids: Sequence[str], now: int, lease_ms: int) -> set[str]:
        with raising_database_faults():
            return jobs.renew(job_ids, now, lease_ms)

    def finish_and_claim(
        self, ends: Sequence[JobEnd], next_ids: Sequence[str], now: int, lease_ms: int
    ) -> tuple[list[Job | None], list[ClaimedJob | None]]:
        with raising_database_faults():
            return jobs.finish_and_claim(ends, next_ids, now, lease_ms)

    def reap_expired(self, now: int) -> list[Job]:
        with raising_database_faults():
            return jobs.reap_expired(now)

    def release(self, job_id: str) -> None:
        with raising_database_faults():
            jobs.release(job_id)
