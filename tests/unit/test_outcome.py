"""What an attempt leads to (DESIGN §5), one row per rule: delivery.outcome.decide
as a table, with the jitter held at its middle so every retry time is exact."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from hookline.server.delivery import retry
from hookline.server.delivery.outcome import Decision, ErrorKind, Fate, Policy, Seen, decide
from hookline.server.states import ChangeKind, DeliveryState
from hookline.server.storage.records import WebhookHealth

END = 1_800_000_000_000  # ms, when the attempt ended
S, M, H = 1000, 60_000, 3_600_000  # ms
WINDOW = 5 * 24 * H  # --auto-disable-after's default
SCHEDULE = retry.parse_schedule(retry.DEFAULT_SCHEDULE)  # 0,5s,5m,30m,2h,5h,10h,10h: 8 attempts
LAST = len(SCHEDULE)


class MiddleJitter(random.Random):
    """Jitter of exactly zero: each delay is its schedule entry."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


POLICY = Policy(SCHEDULE, WINDOW, MiddleJitter())
HEALTHY = WebhookHealth(enabled=True, failing_since=None)
DISABLED = WebhookHealth(enabled=False, failing_since=None)


def answered(status: int, attempt: int = 1, retry_after: str | None = None) -> Seen:
    return Seen(attempt_number=attempt, end_time=END, status_code=status, retry_after=retry_after)


def failed(kind: ErrorKind, error: str, attempt: int = 1) -> Seen:
    return Seen(attempt_number=attempt, end_time=END, error_kind=kind, error=error)


def http_date(ms: int) -> str:
    return formatdate(ms / 1000, usegmt=True)


def retry_at(at: int, error: str) -> Decision:
    return Decision(Fate.RETRY, error, next_attempt_time=at)


def fails(error: str, disable: str = "") -> Decision:
    return Decision(Fate.FAILED, error, disable_webhook=disable)


TIMEOUT = "timed out (ReadTimeout) after 15.0 s"
REFUSED = "refused: 10.0.0.1 is not a globally routable address"
CONNECT = "ConnectError: [Errno 111] Connection refused"

# (what the attempt saw, its webhook's state when recorded, what it leads to)
ROWS: list[tuple[str, Seen, WebhookHealth | None, Decision]] = [
    # Success is any 2xx within the timeout.
    ("200 succeeds", answered(200), HEALTHY, Decision(Fate.SUCCEEDED)),
    ("204 succeeds", answered(204), HEALTHY, Decision(Fate.SUCCEEDED)),
    ("299 succeeds", answered(299), HEALTHY, Decision(Fate.SUCCEEDED)),
    ("a success on the last attempt", answered(200, LAST), HEALTHY, Decision(Fate.SUCCEEDED)),
    # Every other outcome is retried on the schedule: entry i before attempt i + 1.
    ("3xx is not followed", answered(301), HEALTHY, retry_at(END + 5 * S, "HTTP 301 (redirects are not followed)")),
    ("307 neither", answered(307, 2), HEALTHY, retry_at(END + 5 * M, "HTTP 307 (redirects are not followed)")),
    ("199 is no success", answered(199), HEALTHY, retry_at(END + 5 * S, "HTTP 199")),
    ("4xx is retried", answered(400), HEALTHY, retry_at(END + 5 * S, "HTTP 400")),
    ("404 too", answered(404, 3), HEALTHY, retry_at(END + 30 * M, "HTTP 404")),
    ("5xx is retried", answered(500, 2), HEALTHY, retry_at(END + 5 * M, "HTTP 500")),
    ("attempt 7 waits 10 h", answered(500, 7), HEALTHY, retry_at(END + 10 * H, "HTTP 500")),
    ("after the last attempt: FAILED", answered(500, LAST), HEALTHY, fails("HTTP 500")),
    ("a timeout is retried", failed(ErrorKind.TIMEOUT, TIMEOUT), HEALTHY, retry_at(END + 5 * S, TIMEOUT)),
    ("a timeout on the last attempt", failed(ErrorKind.TIMEOUT, TIMEOUT, LAST), HEALTHY, fails(TIMEOUT)),
    ("a connection error is retried", failed(ErrorKind.TRANSPORT, CONNECT, 2), HEALTHY, retry_at(END + 5 * M, CONNECT)),
    # An SSRF refusal is FAILED at once, without retries.
    ("a refused target", failed(ErrorKind.REFUSED, REFUSED), HEALTHY, fails(REFUSED)),
    # Retry-After on 429/503: max(scheduled, min(Retry-After, 1 h)); it uses up its slot.
    ("429, seconds", answered(429, 1, "120"), HEALTHY, retry_at(END + 120 * S, "HTTP 429")),
    ("503, seconds", answered(503, 1, "120"), HEALTHY, retry_at(END + 120 * S, "HTTP 503")),
    ("429, an HTTP date", answered(429, 1, http_date(END + 600 * S)), HEALTHY, retry_at(END + 600 * S, "HTTP 429")),
    ("503, an HTTP date", answered(503, 2, http_date(END + 2 * H)), HEALTHY, retry_at(END + H, "HTTP 503")),
    ("never sooner than scheduled", answered(429, 2, "2"), HEALTHY, retry_at(END + 5 * M, "HTTP 429")),
    ("a date in the past", answered(429, 1, http_date(END - H)), HEALTHY, retry_at(END + 5 * S, "HTTP 429")),
    ("capped at 1 h", answered(429, 1, "86400"), HEALTHY, retry_at(END + H, "HTTP 429")),
    ("an unreadable one is ignored", answered(503, 1, "soon"), HEALTHY, retry_at(END + 5 * S, "HTTP 503")),
    ("only on 429 and 503", answered(500, 1, "120"), HEALTHY, retry_at(END + 5 * S, "HTTP 500")),
    ("and not past the last attempt", answered(429, LAST, "120"), HEALTHY, fails("HTTP 429")),
    # 410 Gone disables the webhook at once.
    ("410 disables the webhook", answered(410), HEALTHY, fails("HTTP 410; webhook disabled (gone)", "gone")),
    ("410 on the last attempt", answered(410, LAST), HEALTHY, fails("HTTP 410; webhook disabled (gone)", "gone")),
    # Disabled while the attempt was in flight: it finished; nothing more is sent.
    ("disabled meanwhile", answered(500), DISABLED, fails("HTTP 500; webhook disabled")),
    ("disabled meanwhile, a 410", answered(410), DISABLED, fails("HTTP 410; webhook disabled")),
    ("disabled meanwhile, a success", answered(200), DISABLED, Decision(Fate.SUCCEEDED)),
    # Deleted meanwhile: its deliveries are CANCELED already.
    ("deleted meanwhile", answered(500), None, fails("HTTP 500")),
    # Auto-disable: no success for the window while deliveries keep failing.
    (
        "failing for the whole window",
        answered(500, 3),
        WebhookHealth(enabled=True, failing_since=END - WINDOW),
        fails("HTTP 500; webhook disabled (failing)", "failing"),
    ),
    (
        "a refusal counts as failing too",
        failed(ErrorKind.REFUSED, REFUSED),
        WebhookHealth(enabled=True, failing_since=END - WINDOW - H),
        fails(f"{REFUSED}; webhook disabled (failing)", "failing"),
    ),
    (
        "failing for less than the window",
        answered(500, 3),
        WebhookHealth(enabled=True, failing_since=END - WINDOW + 1),
        retry_at(END + 30 * M, "HTTP 500"),
    ),
    (
        "a success after a long failing",
        answered(200, 3),
        WebhookHealth(enabled=True, failing_since=END - 2 * WINDOW),
        Decision(Fate.SUCCEEDED),
    ),
]


@pytest.mark.parametrize(("seen", "webhook", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_what_an_attempt_leads_to(seen: Seen, webhook: WebhookHealth | None, expected: Decision) -> None:
    assert decide(seen, webhook, POLICY) == expected


def test_without_an_auto_disable_window_a_failing_webhook_stays_enabled() -> None:
    failing = WebhookHealth(enabled=True, failing_since=END - 100 * WINDOW)
    assert decide(answered(500), failing, Policy(SCHEDULE, None, MiddleJitter())) == retry_at(END + 5 * S, "HTTP 500")


def test_the_schedule_is_the_policy_s() -> None:
    one_try = Policy((0.0,), WINDOW, MiddleJitter())
    assert decide(answered(500), HEALTHY, one_try) == fails("HTTP 500")
    two_tries = Policy((0.0, 0.25), WINDOW, MiddleJitter())
    assert decide(answered(500), HEALTHY, two_tries) == retry_at(END + 250, "HTTP 500")


def test_retries_spread_by_the_jitter() -> None:
    times = {decide(answered(500, 2), HEALTHY, Policy(SCHEDULE, WINDOW, random.Random(n))) for n in range(50)}
    due = [d.next_attempt_time for d in times if d.next_attempt_time is not None]
    assert len(due) == 50 and len(set(due)) > 1
    assert all(END + 0.8 * 5 * M <= t <= END + 1.2 * 5 * M for t in due)


@pytest.mark.parametrize(
    ("fate", "state", "change"),
    [
        (Fate.SUCCEEDED, DeliveryState.SUCCEEDED, ChangeKind.SUCCEEDED),
        (Fate.RETRY, DeliveryState.PENDING, ChangeKind.RETRY_SCHEDULED),
        (Fate.FAILED, DeliveryState.FAILED, ChangeKind.FAILED),
    ],
)
def test_each_fate_is_a_delivery_state_and_the_change_that_records_it(
    fate: Fate, state: DeliveryState, change: ChangeKind
) -> None:
    decision = Decision(fate)
    assert (decision.state, decision.change) == (state, change)


@pytest.mark.parametrize(
    ("seen", "ok", "problem"),
    [
        (answered(200), True, ""),
        (answered(302), False, "HTTP 302 (redirects are not followed)"),
        (answered(503), False, "HTTP 503"),
        # A status line followed by a body that never came whole is no answer.
        (failed(ErrorKind.TIMEOUT, "timed out reading the body of an HTTP 200 response"), False, "timed out reading"),
    ],
)
def test_what_an_attempt_records_as_its_error(seen: Seen, ok: bool, problem: str) -> None:
    assert seen.ok is ok
    assert seen.problem.startswith(problem) and (problem or not seen.problem)
