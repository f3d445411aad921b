"""The statements that run per delivery and per job, each written once with
named parameters (see statements.Statement): the delivery worker's claim,
record and release, and the job runner's claim, queue and end.

States are written into the text (they are the stored names, and never
change); what varies is a `:name`. The tests in tests/unit/test_queries.py
read each one's SQL on both backends and run it on the suite's."""

from __future__ import annotations

import dataclasses

from ..states import DeliveryState, JobState
from .records import Delivery
from .statements import Statement

PENDING, SENDING = DeliveryState.PENDING, DeliveryState.SENDING
WAITING, RUNNING = JobState.WAITING, JobState.RUNNING

# The columns of a delivery record (records.Delivery), as a claim or a release reads them.
DELIVERY_COLUMNS = ", ".join(f'"{f.name}"' for f in dataclasses.fields(Delivery))


# --- the delivery worker ----------------------------------------------------------------

# The earliest due deliveries, at most :per_webhook of each webhook, of those
# of a window of the :window earliest due (so that a claim costs the same
# whatever the backlog), none of the :blocked webhooks (those with no room;
# [""] for none, as no webhook has that id). From the index on (state,
# next_attempt_time, webhook_id, id) alone.
DUE_CANDIDATES = Statement(
    f"""SELECT "id", "webhook_id" FROM ("""
    f"""SELECT "id", "webhook_id", "next_attempt_time","""
    f""" ROW_NUMBER() OVER (PARTITION BY "webhook_id" ORDER BY "next_attempt_time") AS "rank" FROM ("""
    f"""SELECT "id", "webhook_id", "next_attempt_time" FROM "delivery" WHERE "state" = '{PENDING}'"""
    f""" AND "next_attempt_time" <= :now AND "webhook_id" NOT IN (:blocked)"""
    f""" ORDER BY "next_attempt_time" LIMIT :window) AS "earliest") AS "due\""""
    f""" WHERE "rank" <= :per_webhook ORDER BY "next_attempt_time" LIMIT :limit"""
)

# Claim the chosen deliveries that are still PENDING: SENDING under a lease
# until :lease. The state as an expression, not the bare column: given the
# column, SQLite picks the state index and scans every PENDING row instead of
# the ids' keys. On PostgreSQL, of those no other process is claiming right now.
_TAKE = (
    f"""UPDATE "delivery" SET "state" = '{SENDING}', "lease_expire_time" = :lease, "update_time" = :now"""
    f""" WHERE "id" IN ({{ids}}) AND "state" || '' = '{PENDING}' RETURNING {DELIVERY_COLUMNS}"""
)
TAKE_DUE = Statement(
    _TAKE.format(ids=":ids"),
    postgres=_TAKE.format(
        ids=f"""SELECT "id" FROM "delivery" WHERE "id" IN (:ids) AND "state" = '{PENDING}' FOR UPDATE SKIP LOCKED"""
    ),
)

# What sending to the claimed deliveries' webhooks takes.
SENDING_WEBHOOKS = Statement(
    """SELECT "id", "url", "headers", "enabled", "rate_limit_per_s" FROM "webhook" WHERE "id" IN (:ids)"""
)
# The secrets of these webhooks that sign at :now, newest first.
SIGNING_SECRETS = Statement(
    """SELECT "webhook_id", "secret" FROM "webhook_secret" WHERE "webhook_id" IN (:webhook_ids)"""
    """ AND ("expire_time" IS NULL OR "expire_time" > :now) ORDER BY "id" DESC"""
)
EVENT_BODIES = Statement("""SELECT "id", "body" FROM "event" WHERE "id" IN (:ids)""")

ATTEMPT_COLUMNS = (
    "id", "delivery_id", "number", "start_time", "duration_ms", "status_code", "error",
    "response_headers", "response_body", "response_truncated",
)  # fmt: skip
INSERT_ATTEMPTS = Statement(
    f"""INSERT INTO "attempt" ({", ".join(f'"{c}"' for c in ATTEMPT_COLUMNS)})"""
    f""" VALUES :attempts({", ".join(ATTEMPT_COLUMNS)})"""
)

# A webhook's state as it bears on what an attempt to it leads to.
WEBHOOK_HEALTH = Statement("""SELECT "id", "enabled", "failing_since" FROM "webhook" WHERE "id" IN (:ids)""")

# Each attempt's outcome applied to its delivery, if this claim still holds it
# (SENDING, under the lease it set): the ids it was applied to. The lease is
# checked in the same statement that writes, so a delivery released or
# canceled meanwhile is never moved on by a result that is no longer its own.
# Casts, as PostgreSQL types a VALUES column of NULLs as text.
_OUTCOME_KEYS = ("id", "lease", "state", "next_attempt_time", "attempt_count", "last_status_code", "last_error")
RECORD_OUTCOMES = Statement(
    f"""WITH "outcome" ({", ".join(f'"{k}"' for k in _OUTCOME_KEYS)})"""
    f""" AS (VALUES :outcomes({", ".join(_OUTCOME_KEYS)}))"""
    """ UPDATE "delivery" SET "state" = "outcome"."state","""
    """ "next_attempt_time" = CAST("outcome"."next_attempt_time" AS BIGINT),"""
    """ "attempt_count" = CAST("outcome"."attempt_count" AS INTEGER),"""
    """ "last_status_code" = CAST("outcome"."last_status_code" AS INTEGER),"""
    """ "last_error" = "outcome"."last_error", "lease_expire_time" = NULL, "update_time" = :now"""
    f""" FROM "outcome" WHERE "delivery"."id" = "outcome"."id" AND "delivery"."state" = '{SENDING}'"""
    """ AND "delivery"."lease_expire_time" = CAST("outcome"."lease" AS BIGINT) RETURNING "delivery"."id\""""
)
# The attempt of a delivery this claim no longer holds (canceled, or claimed
# again after its lease lapsed) is recorded; the state is not its to change.
RECORD_LATE_ATTEMPT = Statement(
    """UPDATE "delivery" SET "attempt_count" = :number, "last_status_code" = :status_code,"""
    """ "last_error" = :error, "update_time" = :now WHERE "id" = :id AND "attempt_count" < :number"""
)

# Webhook health: a success ends a webhook's failing; a failure starts it.
WEBHOOKS_SUCCEEDED = Statement(
    """UPDATE "webhook" SET "last_success_time" = :now, "failing_since" = NULL WHERE "id" IN (:ids)"""
)
WEBHOOKS_FAILED = Statement(
    """UPDATE "webhook" SET "failing_since" = :now WHERE "id" IN (:ids) AND "failing_since" IS NULL"""
)

# SENDING deliveries given back unsent (a graceful stop), due :now.
RELEASE_UNSENT = Statement(
    f"""UPDATE "delivery" SET "state" = '{PENDING}', "next_attempt_time" = :now, "lease_expire_time" = NULL,"""
    f""" "update_time" = :now WHERE "id" IN (:ids) AND "state" = '{SENDING}' RETURNING {DELIVERY_COLUMNS}"""
)
# SENDING deliveries whose lease lapsed before :now (their sender died), but
# those the caller still sends (:held; [""] for none), due :now.
RELEASE_LAPSED = Statement(
    f"""UPDATE "delivery" SET "state" = '{PENDING}', "next_attempt_time" = :now, "lease_expire_time" = NULL,"""
    f""" "last_error" = :error, "update_time" = :now WHERE "state" = '{SENDING}' AND "lease_expire_time" < :now"""
    f""" AND "id" NOT IN (:held) RETURNING {DELIVERY_COLUMNS}"""
)
# Every SENDING delivery (when no other process can hold one), due :now.
RELEASE_ALL = Statement(
    f"""UPDATE "delivery" SET "state" = '{PENDING}', "next_attempt_time" = :now, "lease_expire_time" = NULL,"""
    f""" "last_error" = :error, "update_time" = :now WHERE "state" = '{SENDING}' RETURNING {DELIVERY_COLUMNS}"""
)

# When the next PENDING delivery of a webhook not :blocked ([""] for none) falls due.
NEXT_DUE = Statement(
    f"""SELECT MIN("next_attempt_time") FROM "delivery" WHERE "state" = '{PENDING}'"""
    """ AND "webhook_id" NOT IN (:blocked)"""
)


# --- the job runner ---------------------------------------------------------------------

# The ids of the :limit oldest WAITING jobs but :excluded ([""] for none).
WAITING_JOBS = Statement(
    f"""SELECT "id" FROM "job" WHERE "state" = '{WAITING}' AND "id" NOT IN (:excluded)"""
    """ ORDER BY "create_time" LIMIT :limit"""
)

# Claim jobs under a lease: RUNNING from :now until :lease. Of the jobs named
# (:ids) that are still WAITING, or of the :limit oldest WAITING ones;
# concurrent claimers on PostgreSQL get disjoint jobs. There the oldest are
# picked once, in a CTE: as a subquery of IN, PostgreSQL may scan the locking
# subquery again for every row it updates and claim more than :limit jobs.
_CLAIM = (
    f"""UPDATE "job" SET "state" = '{RUNNING}', "code" = 'JOB_RUNNING', "claim_time" = :now,"""
    f""" "lease_expire_time" = :lease WHERE "state" = '{WAITING}' AND "id" IN ({{which}}) RETURNING *"""
)
CLAIM_LISTED_JOBS = Statement(_CLAIM.format(which=":ids"))
_OLDEST = f"""SELECT "id" FROM "job" WHERE "state" = '{WAITING}' ORDER BY "create_time" LIMIT :limit"""
CLAIM_OLDEST_JOBS = Statement(
    _CLAIM.format(which=_OLDEST),
    postgres=f"""WITH "oldest" AS MATERIALIZED ({_OLDEST} FOR UPDATE SKIP LOCKED) """
    + _CLAIM.format(which='SELECT "id" FROM "oldest"'),
)

# A job's end (once per ending job).
END_JOB = Statement(
    """UPDATE "job" SET "state" = :state, "code" = :code, "message" = :message, "output" = :output,"""
    """ "end_time" = :end_time, "lease_expire_time" = NULL WHERE "id" = :id"""
)

# --- the delivery change log ------------------------------------------------------------

CHANGE_COLUMNS = (
    "space_id",
    "delivery_id",
    "webhook_id",
    "flow_id",
    "job_id",
    "kind",
    "delivery",
    "attempt_id",
    "time",
)
APPEND_CHANGES = Statement(
    f"""INSERT INTO "delivery_change" ({", ".join(f'"{c}"' for c in CHANGE_COLUMNS)})"""
    f""" VALUES :changes({", ".join(CHANGE_COLUMNS)})"""
)
