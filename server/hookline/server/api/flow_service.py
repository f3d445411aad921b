"""FlowService: flows, their versions and their linked webhooks."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from hookline.v1 import flows_pb2, flows_pb2_grpc

from .. import jsonvalue, validation
from ..errors import InvalidArgument
from ..execution import flowdef
from ..settings import Settings
from ..storage import flows, webhooks
from ..validation import require
from . import convert
from .interceptor import principal
from .pages import PageBudget

WRITABLE = ("alias", "name", "description", "definition", "webhook_ids")
MAX_NAME_LENGTH = 200


def _flow_fields(message: flows_pb2.Flow, paths: tuple[str, ...], settings: Settings) -> dict[str, Any]:
    """Validated values of `paths` of a Flow message; the definition is checked
    (steps, JMESPath, schema) but returned as plain JSON data."""
    v = validation.Violations()
    fields: dict[str, Any] = {}
    for path in paths:
        field = f"flow.{path}"
        if path == "alias":
            validation.alias(v, field, message.alias)
            fields[path] = message.alias
        elif path == "name":
            validation.text(v, field, message.name, MAX_NAME_LENGTH)
            fields[path] = message.name
        elif path == "description":
            validation.text(v, field, message.description, settings.limits.max_description_length)
            fields[path] = message.description
        elif path == "definition":
            definition = jsonvalue.struct_to_python(
                message.definition, field=field, max_depth=settings.limits.max_json_depth
            )
            try:
                flowdef.parse_definition(definition, field=field)
            except InvalidArgument as error:
                v.items.extend(error.violations)
            fields[path] = definition
        elif path == "webhook_ids":
            fields[path] = list(message.webhook_ids)
    v.raise_if_any()
    return fields


class FlowServicer(flows_pb2_grpc.FlowServiceServicer):
    def __init__(self, settings: Settings):
        self._settings = settings

    def CreateFlow(self, request, context):  # type: ignore[no-untyped-def]
        fields = _flow_fields(request.flow, WRITABLE, self._settings)
        space_id = principal().space_id
        linked = webhooks.resolve_ids(space_id, fields.pop("webhook_ids"))
        created = flows.create_flow(space_id, webhook_ids=linked, **fields)
        return convert.flow(created)

    def GetFlow(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        if request.version < 0:
            raise InvalidArgument.field("version", "must be 0 (latest) or a positive version number")
        return convert.flow(flows.get_flow(principal().space_id, request.id, request.version))

    def ListFlows(self, request, context):  # type: ignore[no-untyped-def]
        page = PageBudget(convert.flow)
        _, token = flows.list_flows(principal().space_id, request.page_size, request.page_token, page.fits)
        return flows_pb2.ListFlowsResponse(flows=page.messages, next_page_token=token)

    def UpdateFlow(self, request, context):  # type: ignore[no-untyped-def]
        require("flow.id", request.flow.id)
        fields = _flow_fields(
            request.flow, validation.update_paths(request.update_mask.paths, request.flow, WRITABLE), self._settings
        )
        space_id = principal().space_id
        definition = fields.pop("definition", None)
        linked = fields.pop("webhook_ids", None)
        if linked is not None:
            linked = webhooks.resolve_ids(space_id, linked)
        flow = flows.update_flow(space_id, request.flow.id, fields, definition, linked)
        return convert.flow(flow)

    def DeleteFlow(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        flows.delete_flow(principal().space_id, request.id)
        return empty_pb2.Empty()

    def SetFlowWebhooks(self, request, context):  # type: ignore[no-untyped-def]
        require("flow_id", request.flow_id)
        space_id = principal().space_id
        linked = webhooks.resolve_ids(space_id, list(request.webhook_ids))
        return convert.flow(flows.set_webhooks(space_id, request.flow_id, linked))

    def AddFlowWebhook(self, request, context):  # type: ignore[no-untyped-def]
        require("flow_id", request.flow_id)
        require("webhook_id", request.webhook_id)
        space_id = principal().space_id
        [webhook_id] = webhooks.resolve_ids(space_id, [request.webhook_id])
        return convert.flow(flows.add_webhook(space_id, request.flow_id, webhook_id))

    def RemoveFlowWebhook(self, request, context):  # type: ignore[no-untyped-def]
        require("flow_id", request.flow_id)
        require("webhook_id", request.webhook_id)
        space_id = principal().space_id
        [webhook_id] = webhooks.resolve_ids(space_id, [request.webhook_id])
        return convert.flow(flows.remove_webhook(space_id, request.flow_id, webhook_id))

    def ListFlowWebhooks(self, request, context):  # type: ignore[no-untyped-def]
        require("flow_id", request.flow_id)
        space_id = principal().space_id
        flow = flows.get_flow(space_id, request.flow_id)
        items, token = webhooks.list_webhooks(space_id, request.page_size, request.page_token, flow.webhook_ids)
        return flows_pb2.ListFlowWebhooksResponse(webhooks=[convert.webhook(w) for w in items], next_page_token=token)
