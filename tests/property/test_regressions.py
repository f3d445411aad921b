"""Inputs the property tests turned up, kept as plain examples: a value that
ends in a line break passes a check written as a regular expression with `$`
(which also matches before a final newline), so it must be tested explicitly."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from hookline.client import (
    CreateFlowRequest,
    CreateWebhookRequest,
    Flow,
    UpdateFlowRequest,
    UpdateWebhookRequest,
    Webhook,
)

from .world import World, changes, unique


def _definition() -> struct_pb2.Struct:
    definition = struct_pb2.Struct()
    definition.update({"steps": []})
    return definition


def _requests(world: World, alias: str) -> list[tuple[str, Any, Any]]:
    state = world.snapshot()
    hook, flow = state.webhooks[0].id, state.flows[0].id
    return [
        (
            "CreateWebhook",
            world.client.webhooks.CreateWebhook,
            CreateWebhookRequest(
                webhook=Webhook(alias=alias, url=world.receiver.url("/ok"), event_types=["WEBHOOK.TEST"])
            ),
        ),
        (
            "UpdateWebhook",
            world.client.webhooks.UpdateWebhook,
            UpdateWebhookRequest(
                webhook=Webhook(id=hook, alias=alias), update_mask=field_mask_pb2.FieldMask(paths=["alias"])
            ),
        ),
        (
            "CreateFlow",
            world.client.flows.CreateFlow,
            CreateFlowRequest(flow=Flow(alias=alias, definition=_definition())),
        ),
        (
            "UpdateFlow",
            world.client.flows.UpdateFlow,
            UpdateFlowRequest(flow=Flow(id=flow, alias=alias), update_mask=field_mask_pb2.FieldMask(paths=["alias"])),
        ),
    ]


@pytest.mark.parametrize("tail", ["\n", "\r\n"])
@pytest.mark.parametrize("rpc", ["CreateWebhook", "UpdateWebhook", "CreateFlow", "UpdateFlow"])
def test_an_alias_ending_in_a_line_break_is_invalid(world: World, rpc: str, tail: str) -> None:
    alias = unique("nl") + tail
    [(_, call, request)] = [r for r in _requests(world, alias) if r[0] == rpc]
    before = world.snapshot()
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert "alias" in caught.value.details()
    assert changes(before, world.snapshot()) == []


@pytest.mark.parametrize("name", ["X-Trace\n", "X-Trace\r\n", "X-Trace\x00"])
def test_a_header_name_ending_in_a_control_character_is_invalid(world: World, name: str) -> None:
    request = CreateWebhookRequest(
        webhook=Webhook(
            alias=unique("hdr"), url=world.receiver.url("/ok"), event_types=["WEBHOOK.TEST"], headers={name: "v"}
        )
    )
    before = world.snapshot()
    with pytest.raises(grpc.RpcError) as caught:
        world.client.webhooks.CreateWebhook(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert "webhook.headers" in caught.value.details()
    assert changes(before, world.snapshot()) == []
