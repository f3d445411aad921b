"""Deliveries, attempts, events and the live delivery stream (WebhookService)."""

from __future__ import annotations

import threading
import time

import grpc
from conftest import Reply
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from hookline.client import (
    DeleteWebhookRequest,
    DeliveryEventKind,
    DeliveryState,
    GetDeliveryRequest,
    GetEventRequest,
    GetWebhookRequest,
    GetWebhookStatsRequest,
    ListAttemptsRequest,
    ListDeliveriesRequest,
    ListEventsRequest,
    RecoverDeliveriesRequest,
    RetryDeliveryRequest,
    SendTestEventRequest,
    UpdateWebhookRequest,
    WatchDeliveriesRequest,
    Webhook,
)
from hookline.server import feeds, streams
from hookline.server.storage import deliveries, models, spaces

from .helpers import (
    body_json,
    invalid_argument,
    list_all,
    make_flow,
    make_webhook,
    pages,
    rpc_error,
    start_job,
    unique,
    wait_delivery,
    wait_job,
    wait_until,
)

SUCCEEDED = DeliveryState.DELIVERY_STATE_SUCCEEDED
SENDING = DeliveryState.DELIVERY_STATE_SENDING
FAILED = DeliveryState.DELIVERY_STATE_FAILED
ALL_STATES = [s for s in DeliveryState.values() if s != DeliveryState.DELIVERY_STATE_UNSPECIFIED]


def hook_at(client, receiver, statuses=None, **kw):  # type: ignore[no-untyped-def]
    """A webhook on its own receiver path, optionally answering `statuses`."""
    path = "/" + unique("d")
    if statuses:
        receiver.respond(path, statuses)
    return make_webhook(client, receiver.url(path), **kw).webhook, path


def send_test(client, webhook_id):  # type: ignore[no-untyped-def]
    return client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook_id))


def now_ts() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


def delivery_ids(client, **filters):  # type: ignore[no-untyped-def]
    return [d.id for d in list_all(client.webhooks.ListDeliveries, ListDeliveriesRequest(**filters), "deliveries")]


def test_a_successful_delivery_and_its_attempt(client, receiver):
    hook, path = hook_at(client, receiver)
    sent = send_test(client, hook.id)
    assert sent.delivery.state in (DeliveryState.DELIVERY_STATE_PENDING, DeliveryState.DELIVERY_STATE_SENDING)

    done = wait_delivery(client, sent.delivery.id)
    assert done.state == SUCCEEDED
    assert done.webhook_id == hook.id
    assert done.event_id == sent.event.id
    assert done.event_type == "WEBHOOK.TEST"
    assert done.attempt_count == 1
    assert done.last_status_code == 200
    assert done.last_error == ""

    [attempt] = client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=done.id)).attempts
    assert attempt.id.startswith("att_")
    assert attempt.delivery_id == done.id
    assert attempt.number == 1
    assert attempt.status_code == 200
    assert attempt.error == ""
    assert attempt.duration_ms >= 0
    assert attempt.HasField("start_time")
    assert attempt.response_body == b'{"ok":true}'
    assert attempt.response_truncated is False
    assert {k.lower(): v for k, v in attempt.response_headers.items()}["content-type"] == "application/json"

    [request] = receiver.wait_for(path, 1)
    assert request.headers["webhook-id"] == sent.event.id
    assert request.headers["x-webhook-delivery-attempt"] == "0"


def test_a_failing_delivery_is_retried_on_the_schedule_then_failed(client, receiver):
    hook, path = hook_at(client, receiver, [500])
    sent = send_test(client, hook.id)
    done = wait_delivery(client, sent.delivery.id, FAILED)
    assert done.attempt_count == 3  # the schedule "0,100ms,200ms" has three entries
    assert done.last_status_code == 500
    assert "500" in done.last_error

    attempts = client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=done.id)).attempts
    assert [a.number for a in attempts] == [1, 2, 3]
    assert all(a.status_code == 500 for a in attempts)
    assert all(a.response_body == b'{"error":"scripted failure"}' for a in attempts)
    requests = receiver.wait_for(path, 3)
    assert [r.headers["x-webhook-delivery-attempt"] for r in requests] == ["0", "1", "2"]
    assert {r.headers["webhook-id"] for r in requests} == {sent.event.id}
    # That nothing follows a spent schedule: tests/worker/test_retries.py, without waiting.
    assert len(receiver.at(path)) == 3


def test_a_stored_url_with_user_info_fails_each_attempt_saying_why(client, receiver, caplog):
    # An older server took such URLs; sending to them raised inside the HTTP client.
    hook, path = hook_at(client, receiver)
    stored = receiver.url(path).replace("http://", "http://hooks:s3cr3t-pw@")
    models.Webhook.update(url=stored).where(models.Webhook.id == hook.id).execute()
    sent = send_test(client, hook.id)
    done = wait_delivery(client, sent.delivery.id, FAILED)
    attempts = client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=done.id)).attempts
    assert [a.number for a in attempts] == [1, 2, 3]
    for attempt in attempts:
        assert "user info" in attempt.error and "header" in attempt.error, attempt.error
        assert "s3cr3t-pw" not in attempt.error
        assert attempt.status_code == 0
    assert receiver.at(path) == []
    assert not [r for r in caplog.records if r.exc_info], "a send to a stored URL raised"
    assert "s3cr3t-pw" not in caplog.text


def test_list_attempts_pages(client, receiver):
    hook, _ = hook_at(client, receiver, [500])
    done = wait_delivery(client, send_test(client, hook.id).delivery.id, FAILED)
    paged = pages(client.webhooks.ListAttempts, ListAttemptsRequest(delivery_id=done.id), "attempts", page_size=2)
    assert [[a.number for a in p] for p in paged] == [[1, 2], [3]]


def test_get_delivery_unknown_is_not_found(client):
    rpc_error(
        grpc.StatusCode.NOT_FOUND, client.webhooks.GetDelivery, GetDeliveryRequest(id="dlv_00000000000000000000000000")
    )
    rpc_error(
        grpc.StatusCode.NOT_FOUND,
        client.webhooks.ListAttempts,
        ListAttemptsRequest(delivery_id="dlv_00000000000000000000000000"),
    )


def test_list_deliveries_filters(client, receiver):
    good, _ = hook_at(client, receiver)
    bad, _ = hook_at(client, receiver, [503])
    t0 = now_ts()
    time.sleep(0.01)
    ok1 = send_test(client, good.id)
    ok2 = send_test(client, good.alias)
    ko = send_test(client, bad.id)
    for sent in (ok1, ok2):
        wait_delivery(client, sent.delivery.id, SUCCEEDED)
    wait_delivery(client, ko.delivery.id, FAILED)
    time.sleep(0.01)
    t1 = now_ts()
    later = send_test(client, good.id)
    wait_delivery(client, later.delivery.id, SUCCEEDED)

    assert delivery_ids(client, webhook_id=good.id) == [ok1.delivery.id, ok2.delivery.id, later.delivery.id]
    assert delivery_ids(client, webhook_id=good.alias) == [ok1.delivery.id, ok2.delivery.id, later.delivery.id]
    assert delivery_ids(client, webhook_id=bad.id) == [ko.delivery.id]
    assert delivery_ids(client, event_id=ok2.event.id) == [ok2.delivery.id]
    assert delivery_ids(client, webhook_id=good.id, state=FAILED) == []
    assert delivery_ids(client, webhook_id=bad.id, state=FAILED) == [ko.delivery.id]
    failed = delivery_ids(client, state=FAILED)
    assert ko.delivery.id in failed and ok1.delivery.id not in failed
    window = delivery_ids(client, created_after=t0, created_before=t1)
    assert window == [ok1.delivery.id, ok2.delivery.id, ko.delivery.id]
    assert delivery_ids(client, created_after=t1) == [later.delivery.id]
    rpc_error(
        grpc.StatusCode.NOT_FOUND, client.webhooks.ListDeliveries, ListDeliveriesRequest(webhook_id=unique("ghost"))
    )


def test_list_deliveries_of_a_job(client, receiver):
    hook, path = hook_at(client, receiver, event_types=["JOB.COMPLETED"])
    flow = make_flow(client, [], webhook_ids=[hook.id])
    job = start_job(client, flow.id, {"k": "v"})
    wait_job(client, job.id)
    [delivery] = list_all(client.webhooks.ListDeliveries, ListDeliveriesRequest(job_id=job.id), "deliveries")
    assert delivery.webhook_id == hook.id
    assert delivery.job_id == job.id
    assert delivery.flow_id == flow.id
    assert delivery.event_type == "JOB.COMPLETED"
    assert wait_delivery(client, delivery.id).state == SUCCEEDED
    receiver.wait_for(path, 1)


def test_list_deliveries_pages(client, receiver):
    hook, _ = hook_at(client, receiver)
    made = [send_test(client, hook.id).delivery.id for _ in range(5)]
    paged = pages(client.webhooks.ListDeliveries, ListDeliveriesRequest(webhook_id=hook.id), "deliveries", 2)
    assert [len(p) for p in paged] == [2, 2, 1]
    assert [d.id for p in paged for d in p] == made


def test_list_deliveries_newest_first_pages_backwards_through_time(client, receiver):
    hook, _ = hook_at(client, receiver)
    made = [send_test(client, hook.id).delivery.id for _ in range(5)]
    for order in ("create_time desc", " CREATE_TIME   DESC "):
        request = ListDeliveriesRequest(webhook_id=hook.id, order_by=order)
        paged = pages(client.webhooks.ListDeliveries, request, "deliveries", 2)
        assert [[d.id for d in p] for p in paged] == [made[4:2:-1], made[2:0:-1], made[:1]]
    for order in ("", "create_time", "create_time asc"):
        assert delivery_ids(client, webhook_id=hook.id, order_by=order) == made


def test_a_page_token_works_only_in_the_order_it_was_issued_for(client, receiver):
    hook, _ = hook_at(client, receiver)
    for _ in range(3):
        send_test(client, hook.id)
    newest = client.webhooks.ListDeliveries(
        ListDeliveriesRequest(webhook_id=hook.id, order_by="create_time desc", page_size=1)
    )
    _, message = invalid_argument(
        client.webhooks.ListDeliveries,
        ListDeliveriesRequest(webhook_id=hook.id, page_token=newest.next_page_token),
        "page_token",
    )
    assert "other filters" in message


def test_list_deliveries_refuses_an_unknown_order(client):
    _, message = invalid_argument(client.webhooks.ListDeliveries, ListDeliveriesRequest(order_by="state"), "order_by")
    assert "create_time desc" in message


def test_list_deliveries_filters_by_event_type(client, receiver):
    hook, _ = hook_at(client, receiver, event_types=["JOB.COMPLETED", "JOB.ERROR"])
    flow = make_flow(client, [{"fail_if": "bad", "message": "no"}], webhook_ids=[hook.id])
    done = start_job(client, flow.id, {"bad": False})
    failed = start_job(client, flow.id, {"bad": True})
    test = send_test(client, hook.id)
    for job in (done, failed):
        wait_job(client, job.id)
    [completed] = list_all(client.webhooks.ListDeliveries, ListDeliveriesRequest(job_id=done.id), "deliveries")
    [errored] = list_all(client.webhooks.ListDeliveries, ListDeliveriesRequest(job_id=failed.id), "deliveries")
    assert delivery_ids(client, webhook_id=hook.id, event_type="JOB.ERROR") == [errored.id]
    assert delivery_ids(client, webhook_id=hook.id, event_type="WEBHOOK.TEST") == [test.delivery.id]
    assert delivery_ids(client, webhook_id=hook.id, event_type="JOB.COMPLETED") == [completed.id]
    assert delivery_ids(client, webhook_id=hook.id, event_type="FLOW.DELETED") == []


def test_webhook_stats_count_recent_deliveries_by_state_and_show_health(client, receiver):
    hook, _ = hook_at(client, receiver)
    before = client.webhooks.GetWebhookStats(GetWebhookStatsRequest(id=hook.alias))
    assert before.webhook_id == hook.id
    assert not before.HasField("last_success_time") and not before.HasField("failing_since")
    assert {c.state: c.count for c in before.counts} == dict.fromkeys(ALL_STATES, 0)
    for _ in range(2):
        wait_delivery(client, send_test(client, hook.id).delivery.id, SUCCEEDED)
    failing, _ = hook_at(client, receiver, [500] * 10)
    wait_delivery(client, send_test(client, failing.id).delivery.id, FAILED)

    good = client.webhooks.GetWebhookStats(GetWebhookStatsRequest(id=hook.id))
    assert {c.state: c.count for c in good.counts} == {**dict.fromkeys(ALL_STATES, 0), SUCCEEDED: 2}
    assert good.HasField("last_success_time") and not good.HasField("failing_since")
    day_ago = time.time() - 24 * 3600
    assert abs(good.window_start_time.ToSeconds() - day_ago) < 60
    bad = client.webhooks.GetWebhookStats(GetWebhookStatsRequest(id=failing.id))
    assert {c.state: c.count for c in bad.counts}[FAILED] == 1
    assert bad.HasField("failing_since") and not bad.HasField("last_success_time")


def test_webhook_stats_refuse_bad_windows_and_other_spaces_webhooks(client, receiver, other_space):
    hook, _ = hook_at(client, receiver)
    for seconds in (-1, 0, 400 * 86400):
        invalid_argument(
            client.webhooks.GetWebhookStats,
            GetWebhookStatsRequest(id=hook.id, window=duration_pb2.Duration(seconds=seconds)),
            "window",
        )
    invalid_argument(client.webhooks.GetWebhookStats, GetWebhookStatsRequest(), "id")
    rpc_error(
        grpc.StatusCode.NOT_FOUND, other_space.client.webhooks.GetWebhookStats, GetWebhookStatsRequest(id=hook.id)
    )


def test_retry_delivery_sends_once_more_with_the_same_webhook_id(client, receiver):
    hook, path = hook_at(client, receiver, [500])
    sent = send_test(client, hook.id)
    wait_delivery(client, sent.delivery.id, FAILED)
    receiver.respond(path, [200])

    retried = client.webhooks.RetryDelivery(RetryDeliveryRequest(id=sent.delivery.id))
    assert retried.id == sent.delivery.id
    assert retried.state in (DeliveryState.DELIVERY_STATE_PENDING, DeliveryState.DELIVERY_STATE_SENDING, SUCCEEDED)

    done = wait_delivery(client, sent.delivery.id, SUCCEEDED)
    assert done.attempt_count == 4
    assert done.last_status_code == 200
    attempts = client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=done.id)).attempts
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 500), (3, 500), (4, 200)]
    requests = receiver.wait_for(path, 4)
    assert {r.headers["webhook-id"] for r in requests} == {sent.event.id}
    assert {r.body for r in requests} == {sent.event.body}


def test_retry_a_succeeded_delivery_adds_one_attempt(client, receiver):
    hook, path = hook_at(client, receiver)
    sent = send_test(client, hook.id)
    wait_delivery(client, sent.delivery.id, SUCCEEDED)
    client.webhooks.RetryDelivery(RetryDeliveryRequest(id=sent.delivery.id))
    done = wait_until(
        lambda: client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id)),
        lambda d: d.state == SUCCEEDED and d.attempt_count == 2,
        what="a second attempt",
    )
    assert done.last_status_code == 200
    attempts = client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=sent.delivery.id)).attempts
    assert [a.number for a in attempts] == [1, 2]
    assert [r.headers["webhook-id"] for r in receiver.wait_for(path, 2)] == [sent.event.id] * 2


def test_retry_delivery_of_a_disabled_webhook_is_failed_precondition(client, receiver):
    hook, path = hook_at(client, receiver, [500])
    sent = send_test(client, hook.id)
    wait_delivery(client, sent.delivery.id, FAILED)
    client.webhooks.UpdateWebhook(
        UpdateWebhookRequest(
            webhook=Webhook(id=hook.id, enabled=False), update_mask=field_mask_pb2.FieldMask(paths=["enabled"])
        )
    )
    before = client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id))

    error = rpc_error(
        grpc.StatusCode.FAILED_PRECONDITION, client.webhooks.RetryDelivery, RetryDeliveryRequest(id=sent.delivery.id)
    )
    assert "disabled" in error.details()
    time.sleep(0.3)
    assert client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id)) == before
    assert len(receiver.at(path)) == 3


def test_retry_delivery_of_a_deleted_webhook_is_failed_precondition(client, receiver):
    hook, _ = hook_at(client, receiver, [500])
    client.webhooks.UpdateWebhook(UpdateWebhookRequest(webhook=Webhook(id=hook.id, enabled=True)))
    sent = send_test(client, hook.id)
    wait_delivery(client, sent.delivery.id, FAILED)
    client.webhooks.DeleteWebhook(DeleteWebhookRequest(id=hook.id))
    rpc_error(
        grpc.StatusCode.FAILED_PRECONDITION, client.webhooks.RetryDelivery, RetryDeliveryRequest(id=sent.delivery.id)
    )
    rpc_error(
        grpc.StatusCode.NOT_FOUND,
        client.webhooks.RetryDelivery,
        RetryDeliveryRequest(id="dlv_00000000000000000000000000"),
    )


def test_recover_deliveries_requeues_the_failed_ones_since_a_time(client, receiver):
    hook, path = hook_at(client, receiver, [500])
    old = send_test(client, hook.id)
    wait_delivery(client, old.delivery.id, FAILED)
    time.sleep(0.01)
    since = now_ts()
    time.sleep(0.01)
    recent = [send_test(client, hook.id) for _ in range(2)]
    for sent in recent:
        wait_delivery(client, sent.delivery.id, FAILED)
    receiver.respond(path, [200])

    response = client.webhooks.RecoverDeliveries(RecoverDeliveriesRequest(webhook_id=hook.alias, since=since))
    assert response.recovered_count == 2
    for sent in recent:
        done = wait_delivery(client, sent.delivery.id, SUCCEEDED)
        assert done.attempt_count == 4
    assert client.webhooks.GetDelivery(GetDeliveryRequest(id=old.delivery.id)).state == FAILED
    # Nothing FAILED is left since then.
    assert (
        client.webhooks.RecoverDeliveries(RecoverDeliveriesRequest(webhook_id=hook.id, since=since)).recovered_count
        == 0
    )


def test_recover_deliveries_needs_an_enabled_webhook_and_a_time(client, receiver):
    hook, _ = hook_at(client, receiver, [500])
    sent = send_test(client, hook.id)
    wait_delivery(client, sent.delivery.id, FAILED)
    rpc_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.webhooks.RecoverDeliveries,
        RecoverDeliveriesRequest(webhook_id=hook.id),
    )
    client.webhooks.UpdateWebhook(
        UpdateWebhookRequest(
            webhook=Webhook(id=hook.id, enabled=False), update_mask=field_mask_pb2.FieldMask(paths=["enabled"])
        )
    )
    rpc_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.webhooks.RecoverDeliveries,
        RecoverDeliveriesRequest(webhook_id=hook.id, since=timestamp_pb2.Timestamp(seconds=0)),
    )
    assert client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id)).state == FAILED
    rpc_error(
        grpc.StatusCode.NOT_FOUND,
        client.webhooks.RecoverDeliveries,
        RecoverDeliveriesRequest(webhook_id=unique("ghost"), since=timestamp_pb2.Timestamp(seconds=0)),
    )


def test_get_event_has_the_exact_body_sent(client, receiver):
    hook, path = hook_at(client, receiver)
    sent = send_test(client, hook.id)
    [request] = receiver.wait_for(path, 1)
    event = client.webhooks.GetEvent(GetEventRequest(id=sent.event.id))
    assert event.id == sent.event.id
    assert event.event_type == "WEBHOOK.TEST"
    assert event.webhook_id == hook.id
    assert event.body == request.body == sent.event.body
    assert event.HasField("create_time")
    rpc_error(grpc.StatusCode.NOT_FOUND, client.webhooks.GetEvent, GetEventRequest(id="evt_00000000000000000000000000"))


def test_list_events_filters_and_pages(client, receiver):
    hook, _ = hook_at(client, receiver, event_types=["JOB.COMPLETED", "WEBHOOK.TEST"])
    flow = make_flow(client, [], webhook_ids=[hook.id])
    # Times are kept to the millisecond: keep t0 clear of FLOW.CREATED's on both sides.
    time.sleep(0.01)
    t0 = now_ts()
    time.sleep(0.01)
    job = start_job(client, flow.id, {})
    wait_job(client, job.id)
    tests = [send_test(client, hook.id).event.id for _ in range(3)]

    def ids(**filters):  # type: ignore[no-untyped-def]
        return [e.id for e in list_all(client.webhooks.ListEvents, ListEventsRequest(**filters), "events")]

    [job_event] = ids(job_id=job.id)
    assert client.webhooks.GetEvent(GetEventRequest(id=job_event)).event_type == "JOB.COMPLETED"
    flow_events = list_all(client.webhooks.ListEvents, ListEventsRequest(flow_id=flow.id), "events")
    assert [e.event_type for e in flow_events] == ["FLOW.CREATED", "JOB.COMPLETED"]
    assert ids(event_type="WEBHOOK.TEST", created_after=t0) == tests
    assert ids(created_after=t0) == [job_event] + tests
    assert ids(event_type="JOB.COMPLETED", created_after=t0, job_id=job.id) == [job_event]
    assert ids(created_after=t0, created_before=t0) == []
    paged = pages(client.webhooks.ListEvents, ListEventsRequest(created_after=t0), "events", page_size=3)
    assert [[e.id for e in p] for p in paged] == [[job_event] + tests[:2], tests[2:]]


def read_stream(stream, until, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Messages of a stream until `until(messages)` is true (then the call is canceled)."""
    got = []
    timer = threading.Timer(timeout, stream.cancel)
    timer.start()
    try:
        for message in stream:
            got.append(message)
            if until(got):
                break
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:
            raise
    finally:
        timer.cancel()
        stream.cancel()
    assert until(got), f"the stream did not deliver in {timeout} s: {[DeliveryEventKind.Name(m.kind) for m in got]}"
    return got


def kinds_of(messages, delivery_id):  # type: ignore[no-untyped-def]
    return [
        DeliveryEventKind.Name(m.kind).removeprefix("DELIVERY_EVENT_KIND_")
        for m in messages
        if m.delivery.id == delivery_id
    ]


def test_watch_deliveries_streams_every_change_of_a_delivery(client, receiver):
    hook, _ = hook_at(client, receiver)
    stream = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=hook.id), timeout=20)
    first = next(stream)
    assert first.kind == DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC
    assert first.cursor
    assert not first.HasField("delivery")

    sent = send_test(client, hook.id)
    got = read_stream(stream, lambda ms: "SUCCEEDED" in kinds_of(ms, sent.delivery.id))
    assert kinds_of(got, sent.delivery.id) == ["QUEUED", "ATTEMPT_STARTED", "ATTEMPT_RESULT", "SUCCEEDED"]
    [result] = [m for m in got if m.kind == DeliveryEventKind.DELIVERY_EVENT_KIND_ATTEMPT_RESULT]
    assert result.attempt.number == 1
    assert result.attempt.status_code == 200
    assert got[-1].delivery.state == SUCCEEDED
    assert all(m.cursor for m in got)


def test_watch_deliveries_shows_retries_and_failure(client, receiver):
    hook, _ = hook_at(client, receiver, [500])
    stream = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=hook.alias), timeout=20)
    next(stream)
    sent = send_test(client, hook.id)
    got = read_stream(stream, lambda ms: "FAILED" in kinds_of(ms, sent.delivery.id))
    kinds = kinds_of(got, sent.delivery.id)
    assert kinds[0] == "QUEUED" and kinds[-1] == "FAILED"
    assert kinds.count("ATTEMPT_STARTED") == 3
    assert kinds.count("ATTEMPT_RESULT") == 3
    assert kinds.count("RETRY_SCHEDULED") == 2


def test_watch_deliveries_resumes_after_a_cursor_without_gap_or_repeat(client, receiver):
    hook, _ = hook_at(client, receiver)
    stream = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=hook.id), timeout=20)
    start = next(stream).cursor
    sent = send_test(client, hook.id)
    live = read_stream(stream, lambda ms: "SUCCEEDED" in kinds_of(ms, sent.delivery.id))

    replay = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=hook.id, cursor=start), timeout=20)
    replayed = read_stream(replay, lambda ms: "SUCCEEDED" in kinds_of(ms, sent.delivery.id))
    assert replayed[0].kind == DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC
    changes = [m for m in replayed if m.kind != DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC]
    assert [(m.cursor, m.kind) for m in changes] == [
        (m.cursor, m.kind) for m in live if m.kind != DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC
    ]

    # From the QUEUED message's cursor, the rest follows and nothing before it.
    queued = changes[0]
    after = client.webhooks.WatchDeliveries(
        WatchDeliveriesRequest(webhook_id=hook.id, cursor=queued.cursor), timeout=20
    )
    rest = read_stream(after, lambda ms: "SUCCEEDED" in kinds_of(ms, sent.delivery.id))
    assert kinds_of(rest, sent.delivery.id) == ["ATTEMPT_STARTED", "ATTEMPT_RESULT", "SUCCEEDED"]


def test_watch_deliveries_resumes_between_an_attempt_s_result_and_what_it_led_to(client, receiver):
    # The result and the success are stored as one change-log entry; each message has a cursor of its own.
    hook, _ = hook_at(client, receiver)
    stream = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=hook.id), timeout=20)
    next(stream)
    sent = send_test(client, hook.id)
    live = read_stream(stream, lambda ms: "SUCCEEDED" in kinds_of(ms, sent.delivery.id))
    result, success = [m for m in live if m.delivery.id == sent.delivery.id][-2:]
    assert (result.kind, success.kind) == (
        DeliveryEventKind.DELIVERY_EVENT_KIND_ATTEMPT_RESULT, DeliveryEventKind.DELIVERY_EVENT_KIND_SUCCEEDED,
    )  # fmt: skip
    assert result.cursor != success.cursor
    assert (result.delivery.state, result.attempt.status_code, success.HasField("attempt")) == (SENDING, 200, False)

    after_result = client.webhooks.WatchDeliveries(
        WatchDeliveriesRequest(webhook_id=hook.id, cursor=result.cursor), timeout=20
    )
    assert next(after_result).cursor == result.cursor  # the SYNC: where it resumes
    assert next(after_result) == success  # then only what the result led to, as it was sent live
    after_result.cancel()
    later = send_test(client, hook.id)
    after_success = client.webhooks.WatchDeliveries(
        WatchDeliveriesRequest(webhook_id=hook.id, cursor=success.cursor), timeout=20
    )
    rest = read_stream(after_success, lambda ms: "SUCCEEDED" in kinds_of(ms, later.delivery.id))
    assert sent.delivery.id not in {m.delivery.id for m in rest}
    assert kinds_of(rest, later.delivery.id) == ["QUEUED", "ATTEMPT_STARTED", "ATTEMPT_RESULT", "SUCCEEDED"]


def test_watch_deliveries_filters_by_job_and_flow(client, receiver):
    hook, _ = hook_at(client, receiver, event_types=["JOB.COMPLETED", "WEBHOOK.TEST"])
    flow = make_flow(client, [{"sleep_ms": 200}], webhook_ids=[hook.id])
    by_flow = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(flow_id=flow.alias), timeout=20)
    next(by_flow)
    noise = send_test(client, hook.id)
    job = start_job(client, flow.id, {})
    by_job = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(job_id=job.id), timeout=20)
    next(by_job)
    wait_job(client, job.id)

    def job_done(ms):  # type: ignore[no-untyped-def]
        return any(
            m.delivery.job_id == job.id and m.kind == DeliveryEventKind.DELIVERY_EVENT_KIND_SUCCEEDED for m in ms
        )

    for stream in (by_flow, by_job):
        got = read_stream(stream, job_done)
        changes = [m for m in got if m.kind != DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC]
        assert changes and all(m.delivery.job_id == job.id for m in changes)
        assert noise.delivery.id not in {m.delivery.id for m in got}


def test_watch_deliveries_sends_a_heartbeat_sync(client, receiver):
    hook, _ = hook_at(client, receiver)
    stream = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=hook.id), timeout=20)
    got = read_stream(stream, lambda ms: len(ms) >= 2, timeout=5)  # the test server beats every second
    assert [m.kind for m in got] == [DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC] * 2
    assert got[1].cursor


def advance(items):  # type: ignore[no-untyped-def]
    """The next message of a stream's generator, waiting out its Waits as the senders would."""
    while True:
        item = next(items)
        if not isinstance(item, feeds.Wait):
            return item
        woken = threading.Event()
        if item.subscription.park(woken.set):
            woken.wait(None if item.deadline is None else max(0.0, item.deadline - time.monotonic()))


def test_a_stream_too_far_behind_catches_up_from_the_log_without_gap_or_repeat(
    client, receiver, hookline_app, monkeypatch
):
    # The feed drops a stream with more than MAX_BUFFERED changes waiting (its
    # client reads slowly); the stream then reads the change log on its own.
    monkeypatch.setattr(feeds, "MAX_BUFFERED", 3)
    hook, _ = hook_at(client, receiver)
    feed = hookline_app.feeds.changes
    items = streams.watch_deliveries(
        feed,
        spaces.authenticate(hookline_app.admin_key),
        webhook_id=hook.id,
        flow_id="",
        job_id="",
        cursor="",
        on_end=lambda callback: None,
        heartbeat_s=0.1,
    )
    try:
        assert advance(items).change is None  # the first SYNC
        assert advance(items).change is None  # a heartbeat: the stream now follows the feed
        sent = [send_test(client, hook.id).delivery.id for _ in range(3)]
        for delivery_id in sent:
            wait_delivery(client, delivery_id)
        wait_until(feed.subscriptions, lambda n: n == 0, what="the slow stream dropped by the feed")
        changes = []
        while sum(c.kind == "SUCCEEDED" for c in changes) < len(sent):
            item = advance(items)
            if item.change is not None:
                changes.append(item.change)
    finally:
        items.close()
    positions = [c.position for c in changes]
    assert positions == sorted(set(positions))
    for delivery_id in sent:
        kinds = [c.kind for c in changes if c.delivery.id == delivery_id]
        assert kinds == ["QUEUED", "ATTEMPT_STARTED", "ATTEMPT_RESULT", "SUCCEEDED"]


def test_a_stream_reads_what_the_feed_failed_to_hand_it_on_its_own(client, receiver, hookline_app, monkeypatch):
    hook, _ = hook_at(client, receiver)
    as_changes = deliveries.as_changes
    failures = []

    def fails_once(entries):  # type: ignore[no-untyped-def]
        if not failures:
            failures.append(len(entries))
            raise RuntimeError("the database went away")
        return as_changes(entries)

    monkeypatch.setattr(deliveries, "as_changes", fails_once)
    stream = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=hook.id), timeout=20)
    next(stream)
    sent = send_test(client, hook.id)
    got = read_stream(stream, lambda ms: "SUCCEEDED" in kinds_of(ms, sent.delivery.id))
    assert failures, "the feed never failed"
    assert kinds_of(got, sent.delivery.id) == ["QUEUED", "ATTEMPT_STARTED", "ATTEMPT_RESULT", "SUCCEEDED"]


def test_a_delivery_carries_the_webhook_headers_and_hooklines_own(client, receiver):
    hook, path = hook_at(client, receiver, headers={"X-Team": "billing", "Authorization": "Bearer downstream"})
    sent = send_test(client, hook.id)
    [request] = receiver.wait_for(path, 1)
    assert request.headers["x-team"] == "billing"
    assert request.headers["authorization"] == "Bearer downstream"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("hookline/")
    assert request.headers["webhook-id"] == sent.event.id
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert request.headers["x-webhook-timestamp"] == request.headers["webhook-timestamp"]


def test_a_redirect_is_a_failure(client, receiver):
    hook, path = hook_at(client, receiver, [302])
    done = wait_delivery(client, send_test(client, hook.id).delivery.id, FAILED)
    assert done.last_status_code == 302
    assert done.attempt_count == 3
    assert len(receiver.wait_for(path, 3)) == 3


def test_410_gone_disables_the_webhook_and_announces_it(client, receiver):
    _, watcher_path = hook_at(client, receiver, event_types=["WEBHOOK.DISABLED"])
    hook, path = hook_at(client, receiver, [410])
    done = wait_delivery(client, send_test(client, hook.id).delivery.id, FAILED)
    assert done.attempt_count == 1  # no retries after 410
    assert done.last_status_code == 410

    disabled = client.webhooks.GetWebhook(GetWebhookRequest(id=hook.id))
    assert disabled.enabled is False
    assert disabled.disabled_reason == "gone"
    requests = receiver.wait_for(watcher_path, 1)
    announced = [r for r in requests if body_json(r.body)["data"]["webhook"]["id"] == hook.id]
    assert [body_json(r.body)["data"]["webhook"]["reason"] for r in announced] == ["gone"]
    # That no retry follows a 410: tests/worker/test_retries.py, without waiting.
    assert len(receiver.at(path)) == 1

    enabled = client.webhooks.UpdateWebhook(UpdateWebhookRequest(webhook=Webhook(id=hook.id, enabled=True)))
    assert enabled.enabled is True and enabled.disabled_reason == ""


def test_disabled_webhooks_get_no_new_deliveries(client, receiver):
    hook, path = hook_at(client, receiver, event_types=["FLOW.CREATED"])
    client.webhooks.UpdateWebhook(
        UpdateWebhookRequest(
            webhook=Webhook(id=hook.id, enabled=False), update_mask=field_mask_pb2.FieldMask(paths=["enabled"])
        )
    )
    flow = make_flow(client, [])
    [event] = client.webhooks.ListEvents(ListEventsRequest(flow_id=flow.id, event_type="FLOW.CREATED")).events
    assert delivery_ids(client, event_id=event.id, webhook_id=hook.id) == []
    time.sleep(0.3)
    assert receiver.at(path) == []


def test_cookies_a_receiver_sets_are_never_sent_back(client, receiver):
    # One HTTP client serves every webhook of every space: a cookie kept from one
    # receiver would go out with other webhooks' messages to the same host.
    setter, setter_path = hook_at(client, receiver, [Reply(200, headers={"Set-Cookie": "session=abc; Path=/"})])
    other, other_path = hook_at(client, receiver)
    wait_delivery(client, send_test(client, setter.id).delivery.id)
    wait_delivery(client, send_test(client, setter.id).delivery.id)
    wait_delivery(client, send_test(client, other.id).delivery.id)
    sent = receiver.at(setter_path) + receiver.at(other_path)
    assert len(sent) == 3
    assert [r.headers.get("cookie") for r in sent] == [None, None, None]
