"""The worker over storage of the test's own (storage.queues.DeliveryQueue): the
database's, but failing to record when the test says. A fault of the database
itself (DatabaseFault) is waited out, for as long as it lasts, and the attempt
is recorded once it is over, never lost; any other error ends the tries after a
few, and the delivery is sent again once its lease lapses (at least once)."""

from __future__ import annotations

from collections.abc import Sequence

from hookline.server.errors import Unavailable
from hookline.server.storage.database import DatabaseFault
from hookline.server.storage.queues import DatabaseDeliveries
from hookline.server.storage.sending import AttemptOutcome, Decide, Recorded

from .harness import Bench, attempts, delivery, running, step


class FailingToRecord(DatabaseDeliveries):
    """The database's deliveries, but each call to record raises the next of
    `failures` until there is none left."""

    def __init__(self, failures: Sequence[Exception]) -> None:
        self.failures = list(failures)
        self.record_calls: list[int] = []  # the time (ms) each call was made at

    def record_outcomes(self, outcomes: Sequence[AttemptOutcome], now: int, decide: Decide) -> Recorded:
        self.record_calls.append(now)
        if self.failures:
            raise self.failures.pop(0)
        return super().record_outcomes(outcomes, now, decide)


def database_away() -> DatabaseFault:
    return DatabaseFault(Unavailable("the database is unavailable (database is locked); try again shortly"))


def test_an_attempt_is_recorded_once_the_database_is_back_however_long_it_was_away(bench: Bench) -> None:
    hook = bench.webhook("/ok", [200])
    [delivery_id] = bench.queue(hook)
    store = FailingToRecord([database_away() for _ in range(8)])  # more tries than any other error gets
    worker = bench.worker(store)
    start = bench.clock()

    async def steps() -> int:
        return await step(worker)

    assert running(worker, steps) == 1
    assert len(bench.receivers.at("/ok")) == 1
    # Tried again after 50 ms, then twice as long each time, up to a second.
    waits_ms = [50, 100, 200, 400, 800, 1000, 1000, 1000]
    assert store.record_calls == [start + sum(waits_ms[:n]) for n in range(9)]
    done = delivery(delivery_id)
    assert (done.state, done.attempt_count, done.update_time) == ("SUCCEEDED", 1, start + sum(waits_ms))
    assert [(a.number, a.start_time, a.status_code) for a in attempts(delivery_id)] == [(1, start, 200)]


def test_an_error_that_is_not_the_databases_ends_the_tries_and_the_lapsed_lease_sends_it_again(bench: Bench) -> None:
    hook = bench.webhook("/ok", [200])
    [delivery_id] = bench.queue(hook)
    store = FailingToRecord([RuntimeError("a bug in recording") for _ in range(5)])
    worker = bench.worker(store, delivery_lease_s=60)
    start = bench.clock()

    async def steps() -> tuple[str, str]:
        await step(worker)
        given_up = delivery(delivery_id).state  # still held, under the lease of the send that was not recorded
        bench.clock.now_ms = start + 60_001  # the lease has lapsed
        await step(worker)
        return given_up, delivery(delivery_id).state

    assert running(worker, steps) == ("SENDING", "SUCCEEDED")
    assert len(store.record_calls) == 6  # five tries, then the second send's record
    sent = bench.receivers.at("/ok")
    assert [a.time_ms for a in sent] == [start, start + 60_001]
    assert len({a.request.headers["webhook-id"] for a in sent}) == 1  # the same event, sent again
    assert [(a.number, a.start_time) for a in attempts(delivery_id)] == [(1, start + 60_001)]
