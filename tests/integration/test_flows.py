"""FlowService: flows, their versions, and the webhooks linked to them."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from google.protobuf import field_mask_pb2

from hookline.client import (
    AddFlowWebhookRequest,
    CreateFlowRequest,
    DeleteFlowRequest,
    Flow,
    GetFlowRequest,
    JobState,
    JobStatusCode,
    ListEventsRequest,
    ListFlowsRequest,
    ListFlowWebhooksRequest,
    RemoveFlowWebhookRequest,
    SetFlowWebhooksRequest,
    UpdateFlowRequest,
)
from hookline.server.storage import models

from .helpers import (
    body_json,
    flow_ids,
    invalid_argument,
    list_all,
    make_flow,
    make_webhook,
    pages,
    plain,
    rpc_error,
    start_job,
    struct,
    unique,
    wait_job,
)

ONE = {"steps": [{"transform": "{name: name, version: 'one'}"}]}
TWO = {"steps": [{"transform": "{name: name, version: 'two'}"}]}


def test_create_flow_returns_it_at_version_1(client, receiver):
    hook = make_webhook(client, receiver.url("/flow-create"), event_types=["JOB.COMPLETED"]).webhook
    alias = unique("pricing")
    definition = {
        "input_schema": {"type": "object", "required": ["price"]},
        "timeout_seconds": 60,
        "steps": [{"transform": "{total: price}"}, {"fail_if": "total > `100`", "message": "too dear"}],
    }
    before = time.time()
    flow = make_flow(
        client,
        alias=alias,
        name="Pricing",
        description="prices things",
        definition=definition,
        webhook_ids=[hook.alias],
    )
    assert flow.id.startswith("flow_")
    assert flow.alias == alias
    assert flow.name == "Pricing"
    assert flow.description == "prices things"
    assert flow.version == 1
    assert plain(flow.definition) == definition
    assert list(flow.webhook_ids) == [hook.id]
    assert before - 5 <= flow.create_time.ToMilliseconds() / 1000 <= time.time() + 5


def test_create_flow_announces_it(client, receiver):
    path = "/flow-events-" + unique()
    make_webhook(client, receiver.url(path), event_types=["FLOW.CREATED"])
    flow = make_flow(client, name="Announced")
    [request] = receiver.wait_for(path, 1)
    body = body_json(request.body)
    assert body["eventType"] == "FLOW.CREATED"
    assert body["data"]["flow"] == {"id": flow.id, "alias": flow.alias, "name": "Announced", "version": 1}
    events = client.webhooks.ListEvents(ListEventsRequest(flow_id=flow.id, event_type="FLOW.CREATED")).events
    assert [e.flow_id for e in events] == [flow.id]


def test_update_and_delete_announce_the_flow(client, receiver):
    path = "/flow-changes-" + unique()
    make_webhook(client, receiver.url(path), event_types=["FLOW.UPDATED", "FLOW.DELETED"])
    flow = make_flow(client, definition=ONE, name="Changing")
    client.flows.UpdateFlow(UpdateFlowRequest(flow=Flow(id=flow.id, definition=struct(TWO))))
    client.flows.DeleteFlow(DeleteFlowRequest(id=flow.id))
    bodies = [body_json(r.body) for r in receiver.wait_for(path, 2)]
    assert sorted((b["eventType"], b["data"]["flow"]["version"]) for b in bodies) == [
        ("FLOW.DELETED", 2),
        ("FLOW.UPDATED", 2),
    ]
    assert all(b["data"]["flow"]["id"] == flow.id for b in bodies)


def test_get_flow_by_id_and_by_alias(client):
    flow = make_flow(client, [{"transform": "a"}], name="Get")
    assert client.flows.GetFlow(GetFlowRequest(id=flow.id)) == flow
    assert client.flows.GetFlow(GetFlowRequest(id=flow.alias)) == flow


def test_get_unknown_flow_is_not_found(client):
    error = rpc_error(grpc.StatusCode.NOT_FOUND, client.flows.GetFlow, GetFlowRequest(id=unique("nope")))
    assert "not found" in error.details()


def test_a_definition_change_makes_a_new_version_and_keeps_the_old_one(client):
    flow = make_flow(client, definition=ONE, name="Versions")

    updated = client.flows.UpdateFlow(
        UpdateFlowRequest(
            flow=Flow(id=flow.id, definition=struct(TWO)),
            update_mask=field_mask_pb2.FieldMask(paths=["definition"]),
        )
    )
    assert updated.version == 2
    assert plain(updated.definition) == TWO
    assert updated.name == "Versions"

    latest = client.flows.GetFlow(GetFlowRequest(id=flow.alias))
    assert latest.version == 2 and plain(latest.definition) == TWO
    first = client.flows.GetFlow(GetFlowRequest(id=flow.alias, version=1))
    assert first.version == 1 and plain(first.definition) == ONE
    second = client.flows.GetFlow(GetFlowRequest(id=flow.id, version=2))
    assert second.version == 2 and plain(second.definition) == TWO
    rpc_error(grpc.StatusCode.NOT_FOUND, client.flows.GetFlow, GetFlowRequest(id=flow.id, version=3))

    third = client.flows.UpdateFlow(UpdateFlowRequest(flow=Flow(id=flow.alias, definition=struct(ONE))))
    assert third.version == 3
    assert plain(client.flows.GetFlow(GetFlowRequest(id=flow.id, version=2)).definition) == TWO
    assert plain(client.flows.GetFlow(GetFlowRequest(id=flow.id, version=3)).definition) == ONE


def test_an_old_version_can_still_run(client):
    flow = make_flow(client, definition=ONE)
    client.flows.UpdateFlow(UpdateFlowRequest(flow=Flow(id=flow.id, definition=struct(TWO))))

    old = start_job(client, flow.alias, {"name": "Ada"}, version=1)
    new = start_job(client, flow.alias, {"name": "Ada"})
    assert old.flow_version == 1
    assert new.flow_version == 2
    assert plain(wait_job(client, old.id, JobState.JOB_STATE_COMPLETED).output) == {"name": "Ada", "version": "one"}
    assert plain(wait_job(client, new.id, JobState.JOB_STATE_COMPLETED).output) == {"name": "Ada", "version": "two"}


def test_changes_other_than_the_definition_keep_the_version(client):
    flow = make_flow(client, definition=ONE, name="Before", description="old text")
    renamed = client.flows.UpdateFlow(
        UpdateFlowRequest(
            flow=Flow(id=flow.id, name="After", description="ignored", definition=struct(TWO)),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        )
    )
    assert renamed.name == "After"
    assert renamed.description == "old text"
    assert renamed.version == 1
    assert plain(renamed.definition) == ONE
    # The same definition again is no change either.
    same = client.flows.UpdateFlow(
        UpdateFlowRequest(
            flow=Flow(id=flow.id, definition=struct(ONE)),
            update_mask=field_mask_pb2.FieldMask(paths=["definition"]),
        )
    )
    assert same.version == 1
    assert client.flows.GetFlow(GetFlowRequest(id=flow.id)).name == "After"


def test_update_flow_alias(client):
    flow = make_flow(client)
    new_alias = unique("moved")
    updated = client.flows.UpdateFlow(
        UpdateFlowRequest(
            flow=Flow(id=flow.alias, alias=new_alias),
            update_mask=field_mask_pb2.FieldMask(paths=["alias"]),
        )
    )
    assert updated.alias == new_alias
    assert client.flows.GetFlow(GetFlowRequest(id=new_alias)).id == flow.id
    rpc_error(grpc.StatusCode.NOT_FOUND, client.flows.GetFlow, GetFlowRequest(id=flow.alias))


def test_list_flows_pages_through_everything_without_gaps_or_repeats(client):
    made = [make_flow(client).id for _ in range(7)]
    everything = flow_ids(client)
    paged = pages(client.flows.ListFlows, ListFlowsRequest(), "flows", page_size=2)
    assert len(paged) >= 4
    assert all(len(page) == 2 for page in paged[:-1])
    flat = [f.id for page in paged for f in page]
    assert len(flat) == len(set(flat))
    assert flat == everything
    assert flat[-7:] == made


def test_list_flows_returns_full_flows(client):
    flow = make_flow(client, definition=ONE, name="Listed", description="in the list")
    listed = {f.id: f for f in list_all(client.flows.ListFlows, ListFlowsRequest(), "flows")}
    assert listed[flow.id] == flow


def test_delete_flow(client):
    flow = make_flow(client)
    client.flows.DeleteFlow(DeleteFlowRequest(id=flow.alias))
    rpc_error(grpc.StatusCode.NOT_FOUND, client.flows.GetFlow, GetFlowRequest(id=flow.id))
    assert flow.id not in flow_ids(client)
    rpc_error(grpc.StatusCode.NOT_FOUND, client.flows.DeleteFlow, DeleteFlowRequest(id=flow.id))
    # The alias is free again.
    assert make_flow(client, alias=flow.alias).id != flow.id


def test_set_add_remove_and_list_flow_webhooks(client, receiver):
    a, b, c = (make_webhook(client, receiver.url("/links"), event_types=["JOB.COMPLETED"]).webhook for _ in range(3))
    flow = make_flow(client, webhook_ids=[a.id])

    replaced = client.flows.SetFlowWebhooks(SetFlowWebhooksRequest(flow_id=flow.alias, webhook_ids=[b.id, c.alias]))
    assert sorted(replaced.webhook_ids) == sorted([b.id, c.id])
    assert sorted(client.flows.GetFlow(GetFlowRequest(id=flow.id)).webhook_ids) == sorted([b.id, c.id])

    added = client.flows.AddFlowWebhook(AddFlowWebhookRequest(flow_id=flow.id, webhook_id=a.alias))
    assert sorted(added.webhook_ids) == sorted([a.id, b.id, c.id])
    again = client.flows.AddFlowWebhook(AddFlowWebhookRequest(flow_id=flow.id, webhook_id=a.id))
    assert sorted(again.webhook_ids) == sorted([a.id, b.id, c.id])

    removed = client.flows.RemoveFlowWebhook(RemoveFlowWebhookRequest(flow_id=flow.alias, webhook_id=b.alias))
    assert sorted(removed.webhook_ids) == sorted([a.id, c.id])

    listed = client.flows.ListFlowWebhooks(ListFlowWebhooksRequest(flow_id=flow.alias)).webhooks
    assert sorted(w.id for w in listed) == sorted([a.id, c.id])
    full = {w.id: w for w in listed}
    assert full[a.id] == a and full[c.id] == c

    cleared = client.flows.SetFlowWebhooks(SetFlowWebhooksRequest(flow_id=flow.id))
    assert list(cleared.webhook_ids) == []
    assert list(client.flows.ListFlowWebhooks(ListFlowWebhooksRequest(flow_id=flow.id)).webhooks) == []


def test_list_flow_webhooks_pages(client, receiver):
    hooks = [make_webhook(client, receiver.url("/many")).webhook.id for _ in range(5)]
    make_webhook(client, receiver.url("/not-linked"))
    flow = make_flow(client, webhook_ids=hooks)
    paged = pages(client.flows.ListFlowWebhooks, ListFlowWebhooksRequest(flow_id=flow.id), "webhooks", page_size=2)
    assert [len(p) for p in paged] == [2, 2, 1]
    assert [w.id for page in paged for w in page] == sorted(hooks)


def test_update_flow_webhook_ids_with_a_mask(client, receiver):
    a = make_webhook(client, receiver.url("/mask-links")).webhook
    b = make_webhook(client, receiver.url("/mask-links")).webhook
    flow = make_flow(client, webhook_ids=[a.id])
    updated = client.flows.UpdateFlow(
        UpdateFlowRequest(
            flow=Flow(id=flow.id, webhook_ids=[b.alias]),
            update_mask=field_mask_pb2.FieldMask(paths=["webhook_ids"]),
        )
    )
    assert list(updated.webhook_ids) == [b.id]
    assert updated.version == 1


def test_link_calls_on_unknown_flow_or_webhook_are_not_found(client, receiver):
    hook = make_webhook(client, receiver.url("/nf")).webhook
    flow = make_flow(client)
    rpc_error(
        grpc.StatusCode.NOT_FOUND,
        client.flows.AddFlowWebhook,
        AddFlowWebhookRequest(flow_id=unique("ghost"), webhook_id=hook.id),
    )
    rpc_error(
        grpc.StatusCode.NOT_FOUND,
        client.flows.AddFlowWebhook,
        AddFlowWebhookRequest(flow_id=flow.id, webhook_id=unique("ghost")),
    )
    rpc_error(
        grpc.StatusCode.NOT_FOUND,
        client.flows.SetFlowWebhooks,
        SetFlowWebhooksRequest(flow_id=flow.id, webhook_ids=[hook.id, unique("ghost")]),
    )
    rpc_error(
        grpc.StatusCode.NOT_FOUND, client.flows.ListFlowWebhooks, ListFlowWebhooksRequest(flow_id=unique("ghost"))
    )
    assert list(client.flows.GetFlow(GetFlowRequest(id=flow.id)).webhook_ids) == []


# --- references in input_schema: inside the schema only -------------------------------

D = "flow.definition"


def _outside_refs(port: int) -> list[tuple[dict, str]]:
    """(definition, field of its violation) with a $ref that points outside the schema."""
    url = f"http://127.0.0.1:{port}/schema.json"
    return [
        ({"input_schema": {"$ref": url}}, f"{D}.input_schema.$ref"),
        ({"input_schema": {"properties": {"a": {"$ref": url + "#/$defs/a"}}}}, f"{D}.input_schema.properties.a.$ref"),
        ({"input_schema": {"items": {"$ref": "file:///etc/hostname"}}}, f"{D}.input_schema.items.$ref"),
        ({"input_schema": {"$id": url, "$ref": "other.json"}}, f"{D}.input_schema.$ref"),
    ]


def test_a_ref_outside_input_schema_is_refused_on_create_and_update(client, listener):
    existing = make_flow(client, definition=ONE)
    for definition, field in _outside_refs(listener.port):
        create = CreateFlowRequest(flow=Flow(alias=unique("ref"), definition=struct(definition)))
        _, description = invalid_argument(client.flows.CreateFlow, create, field)
        assert "refers outside input_schema" in description and "$defs" in description
        update = UpdateFlowRequest(flow=Flow(id=existing.id, definition=struct(definition)))
        invalid_argument(client.flows.UpdateFlow, update, field)
    assert client.flows.GetFlow(GetFlowRequest(id=existing.id)).version == 1
    assert listener.connections == []


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"$ref": "#"}, "$ref"),
        ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "$defs.a.$ref"),
    ],
)
def test_a_ref_loop_that_never_descends_into_the_input_is_refused(client, schema, field):
    create = CreateFlowRequest(flow=Flow(alias=unique("loop"), definition=struct({"input_schema": schema})))
    _, description = invalid_argument(client.flows.CreateFlow, create, f"{D}.input_schema.{field}")
    assert "validating would never end" in description


def test_a_recursive_schema_for_a_tree_is_accepted_and_applied(client):
    tree = {"type": "object", "required": ["name"], "properties": {"children": {"items": {"$ref": "#"}}}}
    flow = make_flow(client, definition={"input_schema": tree, "steps": [{"transform": "children[].name"}]})
    good = {"name": "root", "children": [{"name": "a"}, {"name": "b", "children": [{"name": "c"}]}]}
    assert plain(wait_job(client, start_job(client, flow.id, good).id).output) == ["a", "b"]
    bad = wait_job(client, start_job(client, flow.id, {"name": "root", "children": [{"children": []}]}).id)
    assert bad.code == JobStatusCode.JOB_VALIDATION_ERROR
    assert "input.children[0]" in bad.message and "'name' is a required property" in bad.message


def test_a_stored_definition_with_an_outside_ref_fetches_nothing_when_it_runs(client, listener):
    # As if stored before references were checked: written straight into the database.
    flow = make_flow(client, definition=ONE)
    url = f"http://127.0.0.1:{listener.port}/schema.json"
    stored = {"input_schema": {"properties": {"a": {"$ref": url}}}, "steps": []}
    models.FlowVersion.update(definition=json.dumps(stored)).where(
        (models.FlowVersion.flow_id == flow.id) & (models.FlowVersion.version == 1)
    ).execute()

    started = time.monotonic()
    done = wait_job(client, start_job(client, flow.id, {"a": 1}).id, timeout=5)
    assert time.monotonic() - started < 5
    assert done.state == JobState.JOB_STATE_ERROR
    assert done.code == JobStatusCode.JOB_VALIDATION_ERROR
    assert url in done.message and "refers outside input_schema" in done.message
    assert listener.connections == []
    # The other jobs still run.
    other = make_flow(client, definition=ONE)
    assert wait_job(client, start_job(client, other.id, {"name": "x"}).id).state == JobState.JOB_STATE_COMPLETED
