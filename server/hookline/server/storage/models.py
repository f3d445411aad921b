"""Peewee tables. Times are integer milliseconds since the Unix epoch (UTC);
JSON columns hold compact JSON text; states are stored by name."""

from __future__ import annotations

from typing import Any

from peewee import (
    SQL,
    AutoField,
    BigAutoField,
    BigIntegerField,
    BlobField,
    BooleanField,
    CompositeKey,
    DatabaseProxy,
    IntegerField,
    Model,
    NodeList,
    SqliteDatabase,
    TextField,
)

db = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class SchemaVersion(BaseModel):
    version = IntegerField()


class Meta(BaseModel):
    """Settings of the database itself, such as the master key's check value."""

    key = TextField(primary_key=True)
    value = TextField()


class Space(BaseModel):
    id = TextField(primary_key=True)
    name = TextField(unique=True)
    create_time = BigIntegerField()


class ApiKey(BaseModel):
    id = TextField(primary_key=True)  # the key id, the middle part of hl_<id>_<secret>
    space_id = TextField(index=True)
    role = TextField()  # "management" or "solver"
    secret_sha256 = TextField()
    create_time = BigIntegerField()
    revoke_time = BigIntegerField(null=True)


class Webhook(BaseModel):
    id = TextField(primary_key=True)
    space_id = TextField()
    alias = TextField()  # type: ignore[assignment]  # replaces Model.alias(), unused here
    url = TextField()
    description = TextField(default="")
    enabled = BooleanField(default=True)
    event_types = TextField()  # JSON list
    headers = TextField(default="{}")  # JSON object
    rate_limit_per_s = IntegerField(default=0)
    disabled_reason = TextField(default="")
    filter = TextField(default="")  # type: ignore[assignment]  # JMESPath, empty for none (filters.py); replaces Model.filter(), unused here
    create_time = BigIntegerField()
    update_time = BigIntegerField()
    # Auto-disable: when deliveries started failing with no success since.
    failing_since = BigIntegerField(null=True)
    last_success_time = BigIntegerField(null=True)

    class Meta:
        indexes = ((("space_id", "alias"), True),)


class WebhookSecret(BaseModel):
    id = AutoField()
    webhook_id = TextField(index=True)
    secret = TextField()
    create_time = BigIntegerField()
    expire_time = BigIntegerField(null=True)  # set when a rotation retires it


class Flow(BaseModel):
    id = TextField(primary_key=True)
    space_id = TextField()
    alias = TextField()  # type: ignore[assignment]  # replaces Model.alias(), unused here
    name = TextField(default="")
    description = TextField(default="")
    version = IntegerField()
    create_time = BigIntegerField()
    update_time = BigIntegerField()

    class Meta:
        indexes = ((("space_id", "alias"), True),)


class FlowVersion(BaseModel):
    flow_id = TextField()
    version = IntegerField()
    definition = TextField()  # JSON object
    create_time = BigIntegerField()

    class Meta:
        primary_key = CompositeKey("flow_id", "version")


class FlowWebhook(BaseModel):
    flow_id = TextField()
    webhook_id = TextField(index=True)

    class Meta:
        primary_key = CompositeKey("flow_id", "webhook_id")


class Job(BaseModel):
    id = TextField(primary_key=True)
    space_id = TextField()
    flow_id = TextField(index=True)
    flow_alias = TextField()
    flow_version = IntegerField()
    state = TextField()
    code = TextField()
    message = TextField(default="")
    input = TextField()  # JSON
    output = TextField(null=True)  # JSON
    correlation_id = TextField(default="")
    idempotency_key = TextField(null=True)
    request_fingerprint = TextField(default="")
    create_time = BigIntegerField()
    claim_time = BigIntegerField(null=True)
    end_time = BigIntegerField(null=True)
    lease_expire_time = BigIntegerField(null=True)
    cancel_code = TextField(null=True)  # the code a CANCELING job will end with

    class Meta:
        indexes = (
            (("state", "create_time"), False),
            (("space_id", "idempotency_key"), False),
            (("space_id", "correlation_id"), False),
        )


class Event(BaseModel):
    id = TextField(primary_key=True)
    space_id = TextField(index=True)
    event_type = TextField()
    job_id = TextField(default="")
    flow_id = TextField(default="")
    webhook_id = TextField(default="")
    body = BlobField()
    create_time = BigIntegerField()


class EventType(BaseModel):
    """An event type of a space's own (the built-in ones are events.CATALOG)."""

    space_id = TextField()
    name = TextField()
    description = TextField(default="")
    data_schema = TextField(null=True)  # JSON object
    example = TextField(null=True)  # JSON object
    deprecated = BooleanField(default=False)
    archived = BooleanField(default=False)
    create_time = BigIntegerField()
    update_time = BigIntegerField()

    class Meta:
        primary_key = CompositeKey("space_id", "name")


class PublishedKey(BaseModel):
    """The idempotency key of a published event, kept while it holds (24 h)."""

    space_id = TextField()
    idempotency_key = TextField()
    event_id = TextField()
    request_fingerprint = TextField()
    create_time = BigIntegerField()

    class Meta:
        primary_key = CompositeKey("space_id", "idempotency_key")


class Delivery(BaseModel):
    id = TextField(primary_key=True)
    space_id = TextField(index=True)
    webhook_id = TextField(index=True)
    event_id = TextField(index=True)
    event_type = TextField()
    job_id = TextField(default="", index=True)
    flow_id = TextField(default="")
    state = TextField()
    attempt_count = IntegerField(default=0)
    next_attempt_time = BigIntegerField(null=True)
    last_status_code = IntegerField(default=0)
    last_error = TextField(default="")
    lease_expire_time = BigIntegerField(null=True)
    create_time = BigIntegerField()
    update_time = BigIntegerField()

    class Meta:
        # Claims rank the earliest due deliveries per webhook from this index alone.
        indexes = ((("state", "next_attempt_time", "webhook_id", "id"), False),)


class Attempt(BaseModel):
    id = TextField(primary_key=True)
    delivery_id = TextField(index=True)
    number = IntegerField()
    start_time = BigIntegerField()
    duration_ms = IntegerField()
    status_code = IntegerField(default=0)
    error = TextField(default="")
    response_headers = TextField(default="{}")
    response_body = BlobField(default=b"")
    response_truncated = BooleanField(default=False)


class LogPositionField(BigAutoField):
    """The position of an entry in a log that retention cuts from the front.
    On SQLite it is AUTOINCREMENT, so no position is ever handed out again: a
    plain INTEGER PRIMARY KEY goes on from the largest one left, from 1 once
    the table is empty. PostgreSQL's sequences never go back anyway; theirs is
    a BIGSERIAL, as a SERIAL runs out after 2**31 entries."""

    def ddl(self, ctx: Any) -> Any:
        column = super().ddl(ctx)
        bound = self.model._meta.database
        if isinstance(getattr(bound, "obj", bound), SqliteDatabase):
            return NodeList((column, SQL("AUTOINCREMENT")))
        return column


class DeliveryChange(BaseModel):
    """Append-only log of delivery state changes: what WatchDeliveries streams
    and resumes from (the cursor is a position in it)."""

    seq = LogPositionField()
    space_id = TextField()
    delivery_id = TextField()
    webhook_id = TextField()
    flow_id = TextField(default="")
    job_id = TextField(default="")
    kind = TextField()
    delivery = TextField()  # JSON snapshot of the delivery after the change
    attempt_id = TextField(null=True)
    time = BigIntegerField()

    class Meta:
        indexes = ((("space_id", "seq"), False),)


# The Meta row holding the last change-log position retention has purged: a
# cursor before it cannot resume without a gap.
CHANGES_PURGED_THROUGH = "delivery_change_purged_through"


TABLES = [
    SchemaVersion,
    Meta,
    Space,
    ApiKey,
    Webhook,
    WebhookSecret,
    Flow,
    FlowVersion,
    FlowWebhook,
    Job,
    Event,
    Delivery,
    Attempt,
    DeliveryChange,
    EventType,
    PublishedKey,
]
