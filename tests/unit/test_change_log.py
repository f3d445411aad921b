"""The delivery change log on a real database, as retention cuts it from the
front: positions never go back, the purged mark never moves back, and a
stream the purge overtakes is refused rather than let skip changes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from hookline.server.errors import OutOfRange
from hookline.server.feeds import ChangeFeed, Wait
from hookline.server.storage import deliveries, models, retention, spaces, statements
from hookline.server.storage.records import Delivery
from hookline.server.streams import StreamItem, watch_deliveries

NOW = 1_800_000_000_000


def append(*times: int, space_id: str = "spc_1", announce: bool = False) -> list[int]:
    """Change-log entries made at `times` (ms), in that order; their positions. Only
    with `announce` is the process's change feed told of them, as the server does."""
    changes: list[dict[str, Any]] = []
    for time in times:
        delivery = Delivery(
            id=f"dlv_{time}", space_id=space_id, webhook_id="wh_1", event_id="evt_1", event_type="WEBHOOK.TEST",
            job_id="", flow_id="", state="PENDING", attempt_count=0, next_attempt_time=time, last_status_code=0,
            last_error="", create_time=time, update_time=time,
        )  # fmt: skip
        deliveries.log_change(changes, delivery, "QUEUED", time)
    with models.db.atomic():
        if announce:
            deliveries.flush_changes(changes)
        else:
            statements.insert_rows(models.DeliveryChange, changes)
    return positions()[-len(times) :]


def positions() -> list[int]:
    return [c.seq for c in models.DeliveryChange.select().order_by(models.DeliveryChange.seq)]


@pytest.mark.parametrize(
    ("times", "cutoffs", "marks"),
    [
        # In time order, cut in two steps.
        ((NOW, NOW + 1, NOW + 2), (NOW + 2, NOW + 10), (2, 3)),
        # A change with a later position made earlier (it waited for the log's lock)
        # is purged first; the one left before it then must not take the mark back.
        ((NOW + 5, NOW + 1, NOW + 2), (NOW + 3, NOW + 10), (3, 3)),
        # A cutoff that purges nothing leaves the mark.
        ((NOW, NOW + 1), (NOW + 1, NOW), (1, 1)),
    ],
)
def test_the_purged_mark_never_moves_back(db: None, times, cutoffs, marks) -> None:
    append(*times)
    seen = []
    for cutoff in cutoffs:
        while retention.purge_changes(cutoff, batch=1):
            pass
        seen.append(deliveries.changes_purged_through())
    assert tuple(seen) == marks


def test_positions_never_go_back_once_the_log_is_emptied(db: None) -> None:
    first = append(NOW, NOW + 1, NOW + 2)
    assert retention.purge_changes(NOW + 10, batch=500) == 3
    assert positions() == []
    assert deliveries.last_change_seq() == first[-1]  # a fresh cursor is not behind the purge
    later = append(NOW + 20, NOW + 21)
    assert later[0] > first[-1]
    assert retention.purge_changes(NOW + 30, batch=500) == 2
    assert deliveries.changes_purged_through() == later[-1]


def next_message(stream: Iterator[StreamItem | Wait]) -> StreamItem:
    """The stream's next message, waiting (as the server's senders do) while it yields a Wait."""
    while True:
        item = next(stream)
        if not isinstance(item, Wait):
            return item
        woken = threading.Event()
        if item.subscription.park(woken.set):
            assert woken.wait(10), "the stream was not woken"


def test_a_live_stream_the_purge_overtakes_ends_out_of_range(db: None) -> None:
    caller = spaces.authenticate(spaces.bootstrap().token)  # type: ignore[union-attr]
    feed = ChangeFeed(poll_s=3600)  # reads when woken by a commit, never on its own here
    stream = watch_deliveries(
        feed, caller, webhook_id="", flow_id="", job_id="", cursor="", on_end=lambda _: None, heartbeat_s=3600
    )
    try:
        assert next_message(stream).change is None  # SYNC
        (seen,) = append(NOW + 100, space_id=caller.space_id, announce=True)
        assert next_message(stream).change.seq == seen  # type: ignore[union-attr]
        # While the feed waits, changes are written unannounced and the oldest purged.
        skipped, _ = append(NOW, NOW + 200, space_id=caller.space_id)
        assert retention.purge_changes(NOW + 1, batch=500) == 1
        append(NOW + 300, space_id=caller.space_id, announce=True)
        with pytest.raises(OutOfRange, match="fell behind the retained change log"):
            message = next_message(stream)
            raise AssertionError(f"the stream went on past the purged change {skipped} with {message}")
    finally:
        feed.stop()
