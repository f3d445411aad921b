# ruff: noqa: E501  (the expected SQL is kept whole, one text per line, as each database gets it)
"""The statements that run per delivery and per job (storage/queries.py): the
SQL each one hands SQLite and PostgreSQL, compiled without a server, and what
each one does on the suite's real database, bound by name."""

from __future__ import annotations

from typing import Any

import pytest

from hookline.server.storage import models, queries
from hookline.server.storage.statements import Statement

NOW = 1_800_000_000_000
LEASE = NOW + 30_000

# (statement, how many items each list or list of rows holds, its SQLite text,
# its PostgreSQL text when that is not the SQLite one with %s for ?).
SQL = [
    (
        "APPEND_CHANGES",
        {"changes": 2},
        'INSERT INTO "delivery_change" ("space_id", "delivery_id", "webhook_id", "flow_id", "job_id", "kind", "delivery", "attempt_id", "time") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?)',
        None,
    ),
    (
        "CLAIM_LISTED_JOBS",
        {"ids": 2},
        'UPDATE "job" SET "state" = \'RUNNING\', "code" = \'JOB_RUNNING\', "claim_time" = ?, "lease_expire_time" = ? WHERE "state" = \'WAITING\' AND "id" IN (?, ?) RETURNING *',
        None,
    ),
    (
        "CLAIM_OLDEST_JOBS",
        {},
        'UPDATE "job" SET "state" = \'RUNNING\', "code" = \'JOB_RUNNING\', "claim_time" = ?, "lease_expire_time" = ? WHERE "state" = \'WAITING\' AND "id" IN (SELECT "id" FROM "job" WHERE "state" = \'WAITING\' ORDER BY "create_time" LIMIT ?) RETURNING *',
        'WITH "oldest" AS MATERIALIZED (SELECT "id" FROM "job" WHERE "state" = \'WAITING\' ORDER BY "create_time" LIMIT %s FOR UPDATE SKIP LOCKED) UPDATE "job" SET "state" = \'RUNNING\', "code" = \'JOB_RUNNING\', "claim_time" = %s, "lease_expire_time" = %s WHERE "state" = \'WAITING\' AND "id" IN (SELECT "id" FROM "oldest") RETURNING *',
    ),
    (
        "DUE_CANDIDATES",
        {"blocked": 2},
        'SELECT "id", "webhook_id" FROM (SELECT "id", "webhook_id", "next_attempt_time", ROW_NUMBER() OVER (PARTITION BY "webhook_id" ORDER BY "next_attempt_time") AS "rank" FROM (SELECT "id", "webhook_id", "next_attempt_time" FROM "delivery" WHERE "state" = \'PENDING\' AND "next_attempt_time" <= ? AND "webhook_id" NOT IN (?, ?) ORDER BY "next_attempt_time" LIMIT ?) AS "earliest") AS "due" WHERE "rank" <= ? ORDER BY "next_attempt_time" LIMIT ?',
        None,
    ),
    (
        "END_JOB",
        {},
        'UPDATE "job" SET "state" = ?, "code" = ?, "message" = ?, "output" = ?, "end_time" = ?, "lease_expire_time" = NULL WHERE "id" = ?',
        None,
    ),
    ("EVENT_BODIES", {"ids": 2}, 'SELECT "id", "body" FROM "event" WHERE "id" IN (?, ?)', None),
    (
        "INSERT_ATTEMPTS",
        {"attempts": 2},
        'INSERT INTO "attempt" ("id", "delivery_id", "number", "start_time", "duration_ms", "status_code", "error", "response_headers", "response_body", "response_truncated") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        None,
    ),
    (
        "NEXT_DUE",
        {"blocked": 2},
        'SELECT MIN("next_attempt_time") FROM "delivery" WHERE "state" = \'PENDING\' AND "webhook_id" NOT IN (?, ?)',
        None,
    ),
    (
        "RECORD_LATE_ATTEMPT",
        {},
        'UPDATE "delivery" SET "attempt_count" = ?, "last_status_code" = ?, "last_error" = ?, "update_time" = ? WHERE "id" = ? AND "attempt_count" < ?',
        None,
    ),
    (
        "RECORD_OUTCOMES",
        {"outcomes": 2},
        'WITH "outcome" ("id", "lease", "state", "next_attempt_time", "attempt_count", "last_status_code", "last_error") AS (VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?)) UPDATE "delivery" SET "state" = "outcome"."state", "next_attempt_time" = CAST("outcome"."next_attempt_time" AS BIGINT), "attempt_count" = CAST("outcome"."attempt_count" AS INTEGER), "last_status_code" = CAST("outcome"."last_status_code" AS INTEGER), "last_error" = "outcome"."last_error", "lease_expire_time" = NULL, "update_time" = ? FROM "outcome" WHERE "delivery"."id" = "outcome"."id" AND "delivery"."state" = \'SENDING\' AND "delivery"."lease_expire_time" = CAST("outcome"."lease" AS BIGINT) RETURNING "delivery"."id"',
        None,
    ),
    (
        "RELEASE_ALL",
        {},
        'UPDATE "delivery" SET "state" = \'PENDING\', "next_attempt_time" = ?, "lease_expire_time" = NULL, "last_error" = ?, "update_time" = ? WHERE "state" = \'SENDING\' RETURNING "id", "space_id", "webhook_id", "event_id", "event_type", "job_id", "flow_id", "state", "attempt_count", "next_attempt_time", "last_status_code", "last_error", "create_time", "update_time"',
        None,
    ),
    (
        "RELEASE_LAPSED",
        {"held": 2},
        'UPDATE "delivery" SET "state" = \'PENDING\', "next_attempt_time" = ?, "lease_expire_time" = NULL, "last_error" = ?, "update_time" = ? WHERE "state" = \'SENDING\' AND "lease_expire_time" < ? AND "id" NOT IN (?, ?) RETURNING "id", "space_id", "webhook_id", "event_id", "event_type", "job_id", "flow_id", "state", "attempt_count", "next_attempt_time", "last_status_code", "last_error", "create_time", "update_time"',
        None,
    ),
    (
        "RELEASE_UNSENT",
        {"ids": 2},
        'UPDATE "delivery" SET "state" = \'PENDING\', "next_attempt_time" = ?, "lease_expire_time" = NULL, "update_time" = ? WHERE "id" IN (?, ?) AND "state" = \'SENDING\' RETURNING "id", "space_id", "webhook_id", "event_id", "event_type", "job_id", "flow_id", "state", "attempt_count", "next_attempt_time", "last_status_code", "last_error", "create_time", "update_time"',
        None,
    ),
    (
        "SENDING_WEBHOOKS",
        {"ids": 2},
        'SELECT "id", "url", "headers", "enabled", "rate_limit_per_s" FROM "webhook" WHERE "id" IN (?, ?)',
        None,
    ),
    (
        "SIGNING_SECRETS",
        {"webhook_ids": 2},
        'SELECT "webhook_id", "secret" FROM "webhook_secret" WHERE "webhook_id" IN (?, ?) AND ("expire_time" IS NULL OR "expire_time" > ?) ORDER BY "id" DESC',
        None,
    ),
    (
        "TAKE_DUE",
        {"ids": 2},
        'UPDATE "delivery" SET "state" = \'SENDING\', "lease_expire_time" = ?, "update_time" = ? WHERE "id" IN (?, ?) AND "state" || \'\' = \'PENDING\' RETURNING "id", "space_id", "webhook_id", "event_id", "event_type", "job_id", "flow_id", "state", "attempt_count", "next_attempt_time", "last_status_code", "last_error", "create_time", "update_time"',
        'UPDATE "delivery" SET "state" = \'SENDING\', "lease_expire_time" = %s, "update_time" = %s WHERE "id" IN (SELECT "id" FROM "delivery" WHERE "id" IN (%s, %s) AND "state" = \'PENDING\' FOR UPDATE SKIP LOCKED) AND "state" || \'\' = \'PENDING\' RETURNING "id", "space_id", "webhook_id", "event_id", "event_type", "job_id", "flow_id", "state", "attempt_count", "next_attempt_time", "last_status_code", "last_error", "create_time", "update_time"',
    ),
    (
        "WAITING_JOBS",
        {"excluded": 2},
        'SELECT "id" FROM "job" WHERE "state" = \'WAITING\' AND "id" NOT IN (?, ?) ORDER BY "create_time" LIMIT ?',
        None,
    ),
    (
        "WEBHOOKS_FAILED",
        {"ids": 2},
        'UPDATE "webhook" SET "failing_since" = ? WHERE "id" IN (?, ?) AND "failing_since" IS NULL',
        None,
    ),
    (
        "WEBHOOKS_SUCCEEDED",
        {"ids": 2},
        'UPDATE "webhook" SET "last_success_time" = ?, "failing_since" = NULL WHERE "id" IN (?, ?)',
        None,
    ),
    ("WEBHOOK_HEALTH", {"ids": 2}, 'SELECT "id", "enabled", "failing_since" FROM "webhook" WHERE "id" IN (?, ?)', None),
]


@pytest.mark.parametrize(("name", "sizes", "sqlite", "postgres"), SQL, ids=[row[0] for row in SQL])
def test_each_statement_hands_each_backend_its_sql(
    name: str, sizes: dict[str, int], sqlite: str, postgres: str | None
) -> None:
    statement = getattr(queries, name)
    assert statement.sql(False, **sizes) == sqlite
    assert statement.sql(True, **sizes) == (postgres or sqlite.replace("?", "%s"))


def test_every_statement_of_the_module_is_checked() -> None:
    statements = {name for name in dir(queries) if isinstance(getattr(queries, name), Statement)}
    assert statements == {row[0] for row in SQL}


# --- what each one does, on the suite's database -----------------------------------------


def _delivery(delivery_id: str, webhook_id: str = "wh_1", **fields: Any) -> None:
    values: dict[str, Any] = dict(
        id=delivery_id, space_id="spc_1", webhook_id=webhook_id, event_id="evt_1", event_type="JOB.COMPLETED",
        state="PENDING", next_attempt_time=NOW, create_time=NOW, update_time=NOW,
    )  # fmt: skip
    models.Delivery.insert(**{**values, **fields}).execute()


def _webhook(webhook_id: str, **fields: Any) -> None:
    values: dict[str, Any] = dict(
        id=webhook_id, space_id="spc_1", alias=webhook_id, url=f"https://example.com/{webhook_id}",
        event_types="[]", headers='{"x-a":"b"}', rate_limit_per_s=5, create_time=NOW, update_time=NOW,
    )  # fmt: skip
    models.Webhook.insert(**{**values, **fields}).execute()


def _job(job_id: str, create_time: int, state: str = "WAITING") -> None:
    models.Job.insert(
        id=job_id, space_id="spc_1", flow_id="flow_1", flow_alias="f", flow_version=1, state=state, code="JOB_WAITING",
        input="{}", create_time=create_time,
    ).execute()  # fmt: skip


def _deliveries() -> dict[str, tuple[Any, ...]]:
    """Each delivery: (state, next attempt, lease, attempts, last status, last error, updated)."""
    d = models.Delivery
    rows = d.select(d.id, d.state, d.next_attempt_time, d.lease_expire_time, d.attempt_count, d.last_status_code,
                    d.last_error, d.update_time).tuples()  # fmt: skip
    return {row[0]: row[1:] for row in rows}


def test_due_candidates_are_the_earliest_due_but_a_few_per_webhook_and_none_of_the_blocked(db: None) -> None:
    for n in range(3):
        _delivery(f"dlv_a{n}", "wh_a", next_attempt_time=NOW - 10 + n)
    _delivery("dlv_b", "wh_b", next_attempt_time=NOW - 5)
    _delivery("dlv_late", "wh_b", next_attempt_time=NOW + 1)  # not due yet
    _delivery("dlv_c", "wh_c", next_attempt_time=NOW - 20)  # its webhook has no room
    _delivery("dlv_sent", "wh_b", state="SENDING", next_attempt_time=NOW - 30)
    rows = queries.DUE_CANDIDATES.rows(now=NOW, blocked=["wh_c", ""], window=10, per_webhook=2, limit=10)
    assert [tuple(r) for r in rows] == [("dlv_a0", "wh_a"), ("dlv_a1", "wh_a"), ("dlv_b", "wh_b")]
    limited = queries.DUE_CANDIDATES.rows(now=NOW, blocked=[""], window=10, per_webhook=1, limit=2)
    assert [r[0] for r in limited] == ["dlv_c", "dlv_a0"]


def test_take_due_claims_only_those_still_pending_under_the_lease(db: None) -> None:
    _delivery("dlv_1")
    _delivery("dlv_2", state="SENDING", lease_expire_time=NOW + 1)  # claimed meanwhile
    taken = queries.TAKE_DUE.dicts(lease=LEASE, now=NOW + 7, ids=["dlv_1", "dlv_2"])
    assert [(d["id"], d["state"], d["update_time"]) for d in taken] == [("dlv_1", "SENDING", NOW + 7)]
    assert _deliveries()["dlv_1"][:3] == ("SENDING", NOW, LEASE)
    assert _deliveries()["dlv_2"][2] == NOW + 1


def test_what_sending_reads_webhooks_secrets_and_bodies(db: None) -> None:
    _webhook("wh_1", enabled=False, failing_since=NOW - 1)
    _webhook("wh_2")
    secret = models.WebhookSecret
    secret.insert(webhook_id="wh_1", secret="old", create_time=NOW, expire_time=NOW).execute()  # retired at NOW
    secret.insert(webhook_id="wh_1", secret="grace", create_time=NOW, expire_time=NOW + 1).execute()
    secret.insert(webhook_id="wh_1", secret="new", create_time=NOW).execute()
    models.Event.insert(
        id="evt_1", space_id="spc_1", event_type="JOB.COMPLETED", body=b"\x00{}\xff", create_time=NOW
    ).execute()

    hooks = queries.SENDING_WEBHOOKS.dicts(ids=["wh_1", "wh_9"])
    assert [(h["id"], h["url"], h["headers"], bool(h["enabled"]), h["rate_limit_per_s"]) for h in hooks] == [
        ("wh_1", "https://example.com/wh_1", '{"x-a":"b"}', False, 5)
    ]
    health = sorted((w, bool(e), since) for w, e, since in queries.WEBHOOK_HEALTH.rows(ids=["wh_1", "wh_2"]))
    assert health == [("wh_1", False, NOW - 1), ("wh_2", True, None)]
    signing = queries.SIGNING_SECRETS.rows(webhook_ids=["wh_1", "wh_2"], now=NOW)
    assert [tuple(r) for r in signing] == [("wh_1", "new"), ("wh_1", "grace")]
    assert [(e, bytes(b)) for e, b in queries.EVENT_BODIES.rows(ids=["evt_1"])] == [("evt_1", b"\x00{}\xff")]


def _attempt(attempt_id: str, number: int) -> dict[str, Any]:
    return dict(
        id=attempt_id, delivery_id="dlv_1", number=number, start_time=NOW, duration_ms=3, status_code=500,
        error="HTTP 500", response_headers="{}", response_body=b"\x00no", response_truncated=True,
    )  # fmt: skip


def test_attempts_are_inserted_with_their_values(db: None) -> None:
    queries.INSERT_ATTEMPTS.execute(attempts=[_attempt("att_1", 1), _attempt("att_2", 2)])
    stored = {a.id: (a.number, bytes(a.response_body), a.response_truncated) for a in models.Attempt.select()}
    assert stored == {"att_1": (1, b"\x00no", True), "att_2": (2, b"\x00no", True)}


def _outcome(delivery_id: str, lease: int, state: str, next_attempt_time: int | None) -> dict[str, Any]:
    return dict(
        id=delivery_id, lease=lease, state=state, next_attempt_time=next_attempt_time, attempt_count=1,
        last_status_code=500, last_error="HTTP 500",
    )  # fmt: skip


def test_outcomes_move_on_only_the_deliveries_still_held_under_their_lease(db: None) -> None:
    _delivery("dlv_held", state="SENDING", lease_expire_time=LEASE)
    _delivery("dlv_retry", state="SENDING", lease_expire_time=LEASE)
    _delivery("dlv_reclaimed", state="SENDING", lease_expire_time=LEASE + 5)  # its lease lapsed: claimed again
    _delivery("dlv_canceled", state="CANCELED", lease_expire_time=None)
    held = queries.RECORD_OUTCOMES.rows(
        now=NOW + 9,
        outcomes=[
            _outcome("dlv_held", LEASE, "FAILED", None),
            _outcome("dlv_retry", LEASE, "PENDING", NOW + 5_000),
            _outcome("dlv_reclaimed", LEASE, "FAILED", None),
            _outcome("dlv_canceled", LEASE, "FAILED", None),
        ],
    )
    assert sorted(r[0] for r in held) == ["dlv_held", "dlv_retry"]
    rows = _deliveries()
    assert rows["dlv_held"] == ("FAILED", None, None, 1, 500, "HTTP 500", NOW + 9)
    assert rows["dlv_retry"] == ("PENDING", NOW + 5_000, None, 1, 500, "HTTP 500", NOW + 9)
    assert rows["dlv_reclaimed"] == ("SENDING", NOW, LEASE + 5, 0, 0, "", NOW)
    assert rows["dlv_canceled"][0] == "CANCELED"


def test_a_late_attempt_is_counted_but_never_moves_the_count_back(db: None) -> None:
    _delivery("dlv_1", state="SENDING", attempt_count=2)
    queries.RECORD_LATE_ATTEMPT.execute(id="dlv_1", number=1, status_code=500, error="HTTP 500", now=NOW + 1)
    assert _deliveries()["dlv_1"][3:] == (2, 0, "", NOW)
    queries.RECORD_LATE_ATTEMPT.execute(id="dlv_1", number=3, status_code=503, error="HTTP 503", now=NOW + 2)
    assert _deliveries()["dlv_1"][3:] == (3, 503, "HTTP 503", NOW + 2)


def test_webhook_health_a_success_ends_failing_and_a_failure_starts_it_once(db: None) -> None:
    _webhook("wh_ok", failing_since=NOW - 100)
    _webhook("wh_new")
    _webhook("wh_old", failing_since=NOW - 50)
    queries.WEBHOOKS_SUCCEEDED.execute(now=NOW, ids=["wh_ok"])
    queries.WEBHOOKS_FAILED.execute(now=NOW, ids=["wh_new", "wh_old"])
    got = {w.id: (w.failing_since, w.last_success_time) for w in models.Webhook.select()}
    assert got == {"wh_ok": (None, NOW), "wh_new": (NOW, None), "wh_old": (NOW - 50, None)}


def test_releases_give_sending_deliveries_back_due_now(db: None) -> None:
    _delivery("dlv_unsent", state="SENDING", lease_expire_time=LEASE)
    _delivery("dlv_lapsed", state="SENDING", lease_expire_time=NOW - 1, last_error="HTTP 500")
    _delivery("dlv_mine", state="SENDING", lease_expire_time=NOW - 1)  # late, not dead: its sender says so
    _delivery("dlv_live", state="SENDING", lease_expire_time=LEASE)
    _delivery("dlv_done", state="SUCCEEDED", next_attempt_time=None)

    unsent = queries.RELEASE_UNSENT.dicts(now=NOW, ids=["dlv_unsent", "dlv_done"])
    assert [(d["id"], d["state"], d["next_attempt_time"]) for d in unsent] == [("dlv_unsent", "PENDING", NOW)]
    lapsed = queries.RELEASE_LAPSED.dicts(now=NOW, error="sender stopped", held=["dlv_mine", ""])
    assert [(d["id"], d["last_error"]) for d in lapsed] == [("dlv_lapsed", "sender stopped")]
    rest = queries.RELEASE_ALL.dicts(now=NOW + 1, error="sender stopped")
    assert sorted(d["id"] for d in rest) == ["dlv_live", "dlv_mine"]
    assert {k: v[:3] for k, v in _deliveries().items()} == {
        "dlv_unsent": ("PENDING", NOW, None), "dlv_lapsed": ("PENDING", NOW, None),
        "dlv_mine": ("PENDING", NOW + 1, None), "dlv_live": ("PENDING", NOW + 1, None),
        "dlv_done": ("SUCCEEDED", None, None),
    }  # fmt: skip


def test_next_due_is_the_earliest_pending_of_the_webhooks_with_room(db: None) -> None:
    assert queries.NEXT_DUE.scalar(blocked=[""]) is None
    _delivery("dlv_full", "wh_full", next_attempt_time=NOW - 5)
    _delivery("dlv_1", "wh_1", next_attempt_time=NOW + 5)
    _delivery("dlv_sent", "wh_1", state="SENDING", next_attempt_time=NOW - 9)
    assert queries.NEXT_DUE.scalar(blocked=[""]) == NOW - 5
    assert queries.NEXT_DUE.scalar(blocked=["wh_full", ""]) == NOW + 5


def test_the_runner_reads_waiting_jobs_claims_them_and_ends_them(db: None) -> None:
    for n in range(4):
        _job(f"job_{n}", NOW + n)
    _job("job_run", NOW - 1, state="RUNNING")
    assert [r[0] for r in queries.WAITING_JOBS.rows(excluded=["job_0", ""], limit=2)] == ["job_1", "job_2"]

    listed = queries.CLAIM_LISTED_JOBS.dicts(now=NOW, lease=LEASE, ids=["job_2", "job_run"])
    assert [(j["id"], j["state"], j["claim_time"], j["lease_expire_time"]) for j in listed] == [
        ("job_2", "RUNNING", NOW, LEASE)
    ]
    oldest = queries.CLAIM_OLDEST_JOBS.dicts(now=NOW, lease=LEASE, limit=2)
    assert sorted(j["id"] for j in oldest) == ["job_0", "job_1"]

    ends = [
        dict(id="job_0", state="COMPLETED", code="JOB_COMPLETED", message="", output="{}", end_time=NOW + 1),
        dict(id="job_2", state="ERROR", code="JOB_ERROR", message="boom", output=None, end_time=NOW + 2),
    ]
    queries.END_JOB.execute_many(ends)
    got = {j.id: (j.state, j.message, j.output, j.end_time, j.lease_expire_time) for j in models.Job.select()}
    assert got == {
        "job_0": ("COMPLETED", "", "{}", NOW + 1, None), "job_1": ("RUNNING", "", None, None, LEASE),
        "job_2": ("ERROR", "boom", None, NOW + 2, None), "job_3": ("WAITING", "", None, None, None),
        "job_run": ("RUNNING", "", None, None, None),
    }  # fmt: skip


def test_changes_are_appended_in_order(db: None) -> None:
    change = dict(
        space_id="spc_1", delivery_id="dlv_1", webhook_id="wh_1", flow_id="", job_id="", delivery="{}", time=NOW
    )
    queries.APPEND_CHANGES.execute(
        changes=[dict(change, kind="QUEUED", attempt_id=None), dict(change, kind="ATTEMPT_RESULT", attempt_id="att_1")]
    )
    entries = models.DeliveryChange.select().order_by(models.DeliveryChange.seq)
    assert [(e.kind, e.attempt_id) for e in entries] == [("QUEUED", None), ("ATTEMPT_RESULT", "att_1")]
