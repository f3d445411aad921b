"""What happens to a delivery after an attempt (DESIGN §5), decided in one place.

`decide` is a pure function of what the attempt saw (`Seen`), the state of its
webhook when the attempt is recorded (`WebhookHealth`) and the retry policy;
the clock is the attempt's own end time and randomness comes with the policy.
Storage applies the `Decision` it returns to the delivery and the webhook
(storage/sending.record_outcomes) and the metrics count it; neither judges an
attempt again."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from ..states import ChangeKind, DeliveryState
from ..storage.records import WebhookHealth
from . import retry

__all__ = ["Decision", "ErrorKind", "Fate", "Policy", "Seen", "WebhookHealth", "decide"]

# Answers whose Retry-After may lengthen the wait before the next attempt.
RETRY_AFTER_STATUSES = frozenset({429, 503})
# The receiver says the endpoint is gone for good: its webhook is disabled.
GONE = 410


class ErrorKind(StrEnum):
    """Why an attempt got no whole response, if it did not."""

    NONE = "none"  # a whole response arrived: its status decides
    TIMEOUT = "timeout"  # none arrived whole within the request timeout
    TRANSPORT = "transport"  # the request failed otherwise: connection, protocol, a URL that cannot be sent
    REFUSED = "refused"  # nothing was sent: the target is not allowed (SSRF guard)


@dataclass(frozen=True, slots=True)
class Seen:
    """What one attempt saw."""

    attempt_number: int  # 1 for the first
    end_time: int  # ms, when the attempt ended
    status_code: int = 0  # 0 unless a whole response arrived
    error_kind: ErrorKind = ErrorKind.NONE
    error: str = ""  # what went wrong, when error_kind is not NONE
    retry_after: str | None = None  # the response's Retry-After header

    @property
    def ok(self) -> bool:
        """A whole 2xx response within the timeout: the delivery succeeded."""
        return self.error_kind is ErrorKind.NONE and 200 <= self.status_code < 300

    @property
    def problem(self) -> str:
        """The attempt's error as recorded: '' for a success."""
        if self.error_kind is not ErrorKind.NONE:
            return self.error
        if self.ok:
            return ""
        redirect = 300 <= self.status_code < 400
        return f"HTTP {self.status_code}" + (" (redirects are not followed)" if redirect else "")


@dataclass(frozen=True, slots=True)
class Policy:
    """The retry schedule (entry i: the delay in seconds before attempt i + 1),
    the auto-disable window (None: never) and the jitter's randomness."""

    schedule: tuple[float, ...]
    auto_disable_after_ms: int | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False)


class Fate(StrEnum):
    """What happens to the delivery; the values are the metrics' outcome labels."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"  # PENDING again, due at next_attempt_time
    FAILED = "failed"  # no attempt left; RetryDelivery or RecoverDeliveries can send it again


_STATES = {
    Fate.SUCCEEDED: DeliveryState.SUCCEEDED,
    Fate.RETRY: DeliveryState.PENDING,
    Fate.FAILED: DeliveryState.FAILED,
}
_CHANGES = {
    Fate.SUCCEEDED: ChangeKind.SUCCEEDED,
    Fate.RETRY: ChangeKind.RETRY_SCHEDULED,
    Fate.FAILED: ChangeKind.FAILED,
}


@dataclass(frozen=True, slots=True)
class Decision:
    """What an attempt leads to."""

    fate: Fate
    error: str = ""  # the delivery's last error
    next_attempt_time: int | None = None  # ms, for a retry
    disable_webhook: str = ""  # the reason to disable the webhook with ("gone", "failing"), or ""

    @property
    def state(self) -> DeliveryState:
        return _STATES[self.fate]

    @property
    def change(self) -> ChangeKind:
        """The change-log entry that records the decision."""
        return _CHANGES[self.fate]


SUCCEEDED = Decision(Fate.SUCCEEDED)


def decide(seen: Seen, webhook: WebhookHealth | None, policy: Policy) -> Decision:
    """What the attempt `seen` leads to, given its webhook's state (None: deleted)."""
    if seen.ok:
        return SUCCEEDED
    problem = seen.problem
    if webhook is None:  # deleted: its deliveries are canceled
        return Decision(Fate.FAILED, problem)
    if not webhook.enabled:  # disabled while the attempt was in flight: it finished, nothing more is sent
        return Decision(Fate.FAILED, f"{problem}; webhook disabled")
    if seen.status_code == GONE:
        return _disabling(problem, "gone")
    window = policy.auto_disable_after_ms
    if window is not None and webhook.failing_since is not None and seen.end_time - webhook.failing_since >= window:
        return _disabling(problem, "failing")
    if seen.error_kind is ErrorKind.REFUSED:  # final: no retry could be allowed either
        return Decision(Fate.FAILED, problem)
    retry_after = None
    if seen.status_code in RETRY_AFTER_STATUSES:
        retry_after = retry.parse_retry_after(seen.retry_after, now=seen.end_time / 1000)
    delay = retry.next_delay(policy.schedule, seen.attempt_number, rng=policy.rng, retry_after=retry_after)
    if delay is None:  # the schedule is spent
        return Decision(Fate.FAILED, problem)
    return Decision(Fate.RETRY, problem, seen.end_time + int(delay * 1000))


def _disabling(problem: str, reason: str) -> Decision:
    return Decision(Fate.FAILED, f"{problem}; webhook disabled ({reason})", disable_webhook=reason)
