"""A client in another language: tests/node/grpc-client.js drives hookline from
Node.js with @grpc/grpc-js and @grpc/proto-loader on the project's .proto files
(no generated code), its API key in `authorization: Bearer` metadata. It creates
a webhook and a flow linked to it, starts a job and polls GetJob until it ends;
the job's end then reaches the loopback receiver, signed with the secret Node.js
was given."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import grpc_tools
import pytest

from hookline.client import (
    Client,
    GetFlowRequest,
    GetJobRequest,
    GetWebhookRequest,
    JobState,
    verify,
)
from hookline.server.app import Hookline

from .readme import NODE_DIR, ROOT

# google/protobuf/*.proto, as grpcio-tools ships them.
GOOGLE_PROTOS = Path(grpc_tools.__file__).parent / "_proto"
PATH = "/node-client"


def run_client(grpc_addr: str, webhook_url: str, api_key: str) -> tuple[int, dict[str, Any], str]:
    """The script's exit code, its JSON output and its stderr."""
    done = subprocess.run(
        [
            "node",
            str(NODE_DIR / "grpc-client.js"),
            grpc_addr,
            webhook_url,
            str(ROOT / "protos"),
            str(GOOGLE_PROTOS),
        ],
        env={**os.environ, "HOOKLINE_API_KEY": api_key},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, output, done.stderr


@pytest.fixture(scope="module")
def node_run(
    node_modules: Path, client: Client, hookline_app: Hookline, grpc_addr: str, receiver: Any
) -> dict[str, Any]:
    code, output, stderr = run_client(grpc_addr, receiver.url(PATH), hookline_app.admin_key)
    assert code == 0, f"grpc-client.js exited {code}: {output}\n{stderr}"
    return output


def test_node_client_creates_a_webhook_and_a_flow_and_reads_its_jobs_output(
    node_run: dict[str, Any], client: Client
) -> None:
    webhook, flow, job = node_run["webhook"], node_run["flow"], node_run["job"]
    assert webhook["id"].startswith("wh_") and webhook["secret"].startswith("whsec_")
    assert flow["id"].startswith("flow_") and flow["version"] == 1 and flow["webhookIds"] == [webhook["id"]]
    assert job["id"].startswith("job_") and job["flowId"] == flow["id"]
    assert (job["state"], job["code"], job["message"]) == ("JOB_STATE_COMPLETED", "JOB_SUCCESS", "")
    assert job["input"] == {"items": [{"price": 5}, {"price": 7.5}], "city": "Zürich"}
    assert job["output"] == {"total": 12.5, "count": 2, "city": "Zürich"}

    # The Python client sees the same things.
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=webhook["alias"])).id == webhook["id"]
    assert list(client.flows.GetFlow(GetFlowRequest(id=flow["alias"])).webhook_ids) == [webhook["id"]]
    done = client.jobs.GetJob(GetJobRequest(id=job["id"]))
    assert done.state == JobState.JOB_STATE_COMPLETED and done.correlation_id == job["correlationId"]


def test_the_node_clients_job_reaches_its_webhook_signed_with_the_secret_node_got(
    node_run: dict[str, Any], receiver: Any
) -> None:
    [request] = receiver.wait_for(PATH, 1, timeout=15.0)
    message = verify(request.body, request.headers, node_run["webhook"]["secret"])
    assert message["eventType"] == "JOB.COMPLETED"
    assert message["data"]["jobId"] == node_run["job"]["id"]
    assert message["data"]["output"] == {"total": 12.5, "count": 2, "city": "Zürich"}


def test_node_client_without_a_valid_key_is_refused(
    node_modules: Path, client: Client, grpc_addr: str, receiver: Any
) -> None:
    code, output, _ = run_client(grpc_addr, receiver.url("/node-client-refused"), "not-a-key")
    assert code == 1
    assert output["error"]["name"] == "UNAUTHENTICATED", output


def test_the_node_clients_published_event_reaches_its_webhook_signed(node_run: dict[str, Any], receiver: Any) -> None:
    [request] = receiver.wait_for(PATH + "-events", 1, timeout=15.0)
    message = verify(request.body, request.headers, node_run["eventsWebhook"]["secret"])
    assert message["eventType"] == node_run["published"]["eventType"]
    assert message["metadata"]["eventId"] == node_run["published"]["id"]
    assert message["data"] == {"orderId": message["data"]["orderId"], "amount": 12.5, "city": "Zürich"}
    assert message["metadata"]["correlationId"].startswith("node-order-")
