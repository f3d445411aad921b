"""How a delivery worker shares its send slots between webhooks, so that slow or
dead endpoints never delay the others, however many there are (DESIGN §5).

Every webhook has its cap on requests in flight. Beyond that, each webhook is
judged by its own requests:

* fast: its last request was answered (or failed) within SLOW_S and none has
  been outstanding longer; it may use any free slot;
* slow: its last request took SLOW_S or more, or timed out, or one has now been
  outstanding that long; slow webhooks together hold at most SLOW_SHARE of the
  slots, each an equal part of that (up to its cap);
* unproven: no request of it has been answered here yet; it has one request in
  flight at a time until one is (it might hang).

Slow and unproven webhooks together hold at most SUSPECT_SHARE of the slots, so
fast webhooks always find free ones, and slow ones leave some to webhooks still
unproven. A slow webhook answered quickly is fast again at once, with its whole
cap. Within a claim, deliveries are taken level by level (every webhook's first
before any webhook's second), so one webhook's backlog cannot crowd out others.

The state lives on the worker's event loop; a claim, on the database thread,
decides from a snapshot of it (a Plan).

With several delivery processes (--delivery-processes), each applies these
rules to its share of the limits (process_share, request_spacing_s), so that
together they keep to the server's."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

SLOW_S = 1.0
SUSPECT_SHARE = 0.5
SLOW_SHARE = 0.375
# A webhook with nothing in flight for this long is forgotten (unproven again).
FORGET_S = 600.0

FAST, SLOW, UNPROVEN = "fast", "slow", "unproven"


@dataclass(frozen=True)
class ProcessShare:
    """The limits one delivery process keeps to."""

    delivery_concurrency: int
    webhook_max_in_flight: int


def process_share(delivery_concurrency: int, webhook_max_in_flight: int, processes: int, number: int) -> ProcessShare:
    """The share of delivery process `number` (0 to processes - 1): each limit
    split as evenly as whole numbers allow, the first processes taking one more
    of a remainder, so that the shares add up to the limit; but at least one
    each, or a process could never send (to a webhook)."""
    return ProcessShare(
        delivery_concurrency=_part(delivery_concurrency, processes, number),
        webhook_max_in_flight=_part(webhook_max_in_flight, processes, number),
    )


def _part(total: int, processes: int, number: int) -> int:
    return max(1, total // processes + (number < total % processes))


def request_spacing_s(rate_limit_per_s: float, processes: int) -> float:
    """Seconds between one delivery process's requests to a webhook whose rate
    limit is `rate_limit_per_s`: each of the processes takes an equal part of it."""
    return processes / rate_limit_per_s


@dataclass
class _Webhook:
    in_flight: int = 0  # claimed and not yet recorded
    requests: dict[str, float] = field(default_factory=dict)  # delivery id -> when its request went out
    slow: bool | None = None  # the verdict on its last answered request; None: none yet
    last_used: float = 0.0


class Capacity:
    def __init__(self, total: int, per_webhook: int, clock: Callable[[], float] = time.monotonic):
        self.total = total
        self.per_webhook = per_webhook
        self.suspect_limit = max(1, int(total * SUSPECT_SHARE))
        self.slow_limit = max(1, int(total * SLOW_SHARE))
        self._clock = clock
        self._webhooks: dict[str, _Webhook] = {}  # every webhook seen lately
        self._busy: dict[str, _Webhook] = {}  # those with requests in flight
        self._slow: set[str] = set()  # those whose last answered request was slow

    # --- a send's life: claimed, sent, answered, released --------------------------

    def claimed(self, webhook_id: str) -> None:
        hook = self._webhooks.get(webhook_id)
        if hook is None:
            hook = self._webhooks[webhook_id] = _Webhook()
        hook.in_flight += 1
        self._busy[webhook_id] = hook

    def sent(self, webhook_id: str, delivery_id: str) -> None:
        """Its request goes out now (after any wait for the webhook's rate limit)."""
        self._webhooks[webhook_id].requests[delivery_id] = self._clock()

    def answered(self, webhook_id: str, delivery_id: str, slow: bool) -> bool:
        """Its request ended (answer or error); `slow`: it took SLOW_S or more, or
        timed out. True when that makes its webhook fast: the share of slow and
        unproven webhooks has room again before the slot itself is free."""
        hook = self._webhooks[webhook_id]
        suspect = self._kind(hook, self._clock() - SLOW_S) != FAST
        hook.requests.pop(delivery_id, None)
        hook.slow = slow
        if slow:
            self._slow.add(webhook_id)
        else:
            self._slow.discard(webhook_id)
        return suspect and self._kind(hook, self._clock() - SLOW_S) == FAST

    def released(self, webhook_id: str, delivery_id: str) -> None:
        """Its slot is free (its result is recorded, or it was given back)."""
        hook = self._webhooks[webhook_id]
        hook.requests.pop(delivery_id, None)
        hook.in_flight -= 1
        hook.last_used = self._clock()
        if not hook.in_flight:
            del self._busy[webhook_id]

    def forget_idle(self) -> None:
        cutoff = self._clock() - FORGET_S
        for webhook_id in [w for w, h in self._webhooks.items() if not h.in_flight and h.last_used < cutoff]:
            del self._webhooks[webhook_id]
            self._slow.discard(webhook_id)

    def kind(self, webhook_id: str) -> str:
        hook = self._webhooks.get(webhook_id)
        return UNPROVEN if hook is None else self._kind(hook, self._clock() - SLOW_S)

    @staticmethod
    def _kind(hook: _Webhook, slow_before: float) -> str:
        if hook.slow or any(start < slow_before for start in hook.requests.values()):
            return SLOW
        return UNPROVEN if hook.slow is None else FAST

    def _idle_kind(self, webhook_id: str) -> str:
        """The kind of a webhook with nothing in flight (read from the claim's thread)."""
        hook = self._webhooks.get(webhook_id)
        return UNPROVEN if hook is None or hook.slow is None else SLOW if hook.slow else FAST

    # --- claims ---------------------------------------------------------------------

    def plan(self) -> Plan:
        """What the next claim may take, decided from now; it costs as many steps
        as webhooks have requests in flight (and slow ones when their share is full)."""
        slow_before = self._clock() - SLOW_S
        busy = {w: (self._kind(h, slow_before), h.in_flight) for w, h in self._busy.items()}
        slow_in_flight = sum(n for kind, n in busy.values() if kind == SLOW)
        suspect_in_flight = slow_in_flight + sum(n for kind, n in busy.values() if kind == UNPROVEN)
        slow_webhooks = sum(1 for kind, _ in busy.values() if kind == SLOW)
        caps = {
            FAST: self.per_webhook,
            SLOW: min(self.per_webhook, -(-self.slow_limit // max(1, slow_webhooks))),
            UNPROVEN: 1,
        }
        slow_room = self.slow_limit - slow_in_flight
        suspect_room = self.suspect_limit - suspect_in_flight
        blocked = [
            w
            for w, (kind, n) in busy.items()
            if n >= caps[kind] or (kind != FAST and suspect_room <= 0) or (kind == SLOW and slow_room <= 0)
        ]
        if slow_room <= 0 or suspect_room <= 0:
            blocked += [w for w in list(self._slow) if w not in busy]
        return Plan(busy, self._idle_kind, caps, slow_room, suspect_room, blocked)


class Plan:
    """A claim's choice of deliveries, from a snapshot of the worker's sends."""

    def __init__(
        self,
        busy: dict[str, tuple[str, int]],
        idle_kind: Callable[[str], str],
        caps: dict[str, int],
        slow_room: int,
        suspect_room: int,
        blocked: list[str],
    ):
        self._busy = busy  # webhooks with requests in flight: (kind, how many)
        self._idle_kind = idle_kind
        self._caps = caps
        self._slow_room = slow_room
        self._suspect_room = suspect_room
        # Webhooks that can take nothing now, for the claim to skip their backlogs.
        self.blocked = blocked

    def _state(self, webhook_id: str) -> tuple[str, int]:
        found = self._busy.get(webhook_id)
        return found if found is not None else (self._idle_kind(webhook_id), 0)

    def choose(self, candidates: Sequence[tuple[str, str]], capacity: int) -> list[str]:
        """Of (delivery id, webhook id) due earliest first, the ids to take: at most
        `capacity`, level by level, within each webhook's cap and the shares of
        slow and unproven webhooks."""
        states = {webhook_id: self._state(webhook_id) for _, webhook_id in candidates}
        levels: dict[str, int] = {}
        ordered = []
        for position, (delivery_id, webhook_id) in enumerate(candidates):
            level = levels.get(webhook_id, states[webhook_id][1])
            levels[webhook_id] = level + 1
            ordered.append((level, position, delivery_id, webhook_id))
        ordered.sort()
        chosen: list[str] = []
        taken: dict[str, int] = {}
        slow_room, suspect_room = self._slow_room, self._suspect_room
        for _, _, delivery_id, webhook_id in ordered:
            if len(chosen) >= capacity:
                break
            kind, in_flight = states[webhook_id]
            count = taken.get(webhook_id, 0)
            if in_flight + count >= self._caps[kind]:
                continue
            if kind != FAST:
                if suspect_room <= 0 or (kind == SLOW and slow_room <= 0):
                    continue
                suspect_room -= 1
                slow_room -= kind == SLOW
            taken[webhook_id] = count + 1
            chosen.append(delivery_id)
        return chosen
