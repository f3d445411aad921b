"""The people's commands against a real server: tables for people, JSON for
scripts, and errors a person can act on (exit status 1, never a traceback).

Quick commands run in this process (`hookline.cli.main`); the receiver and the
watches run as real processes."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from conftest import Watching, free_port
from google.protobuf import struct_pb2

from hookline import signing
from hookline.client import (
    CancelJobRequest,
    Client,
    CreateFlowRequest,
    CreateWebhookRequest,
    Flow,
    SendTestEventRequest,
    StartJobRequest,
    WatchDeliveriesRequest,
    WatchJobRequest,
    Webhook,
)
from hookline.server.app import Hookline
from hookline.server.settings import Settings
from hookline.server.storage import spaces

from .helpers import HOOKLINE, SECRET, Process, Result, cli_env, run_cli, run_on_terminal

EVENT_FIELDS = ("webhook.alias", "webhook.url", "webhook.event_types[0]")


@pytest.fixture(scope="module")
def address(client: Client, grpc_addr: str) -> str:
    """The address of the module's server (`client` starts it)."""
    return grpc_addr


@pytest.fixture
def hl(
    capsys: pytest.CaptureFixture[str], address: str, hookline_app: Hookline, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """`hookline ARGS` on the module's server, with the management key in HOOKLINE_API_KEY."""
    monkeypatch.setenv("HOOKLINE_API_KEY", hookline_app.admin_key)
    monkeypatch.setenv("HOOKLINE_ADDRESS", address)
    monkeypatch.setenv("NO_COLOR", "1")
    return lambda *argv: run_cli(capsys, *argv)


@pytest.fixture(scope="module")
def receiver_process() -> Iterator[Process]:
    """`hookline receiver` on a free port, printing JSON lines; answers 200."""
    process = Process([*HOOKLINE, "receiver", "--port", "0", "--secret", SECRET, "--json"], env=cli_env())
    port = process.wait_for(r"listening on http://127\.0\.0\.1:(\d+)/", "err")[0].group(1)
    process.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield process
    process.stop()


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}\n--- stdout\n{result.out}\n--- stderr\n{result.err}"
    assert "Traceback" not in result.err
    return result


def fails(result: Result) -> Result:
    assert result.code != 0, f"expected a failure\n--- stdout\n{result.out}"
    assert "Traceback" not in result.err + result.out
    assert result.err.startswith("hookline: "), result.err
    return result


def table(text: str) -> list[dict[str, str]]:
    """A printed table as rows of {HEADER: cell} (columns found from the header line)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def fields(text: str) -> dict[str, str]:
    """`name: value` lines as a dict (single-line values only)."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^(\w[\w ]*):\s+(.*\S)$", text, re.M)}


# --- tables and JSON --------------------------------------------------------------------


def test_webhooks_as_tables_and_as_json(hl, receiver_process: Process) -> None:
    created = ok(hl("webhooks", "create", "tables", "--url", receiver_process.url + "/tables", "-e", "WEBHOOK.TEST"))
    shown = fields(created.out)
    assert shown["alias"] == "tables" and shown["url"].endswith("/tables") and shown["enabled"] == "yes"
    assert shown["secret"].startswith("whsec_") and "shown only now" in created.err
    webhook_id = shown["id"]

    rows = table(ok(hl("webhooks", "list")).out)
    row = next(r for r in rows if r["ALIAS"] == "tables")
    assert row["ID"] == webhook_id and row["EVENTS"] == "WEBHOOK.TEST" and row["ENABLED"] == "yes"

    listed = json.loads(ok(hl("webhooks", "list", "--json")).out)
    assert webhook_id in [w["id"] for w in listed["webhooks"]] and listed["nextPageToken"] == ""
    assert webhook_id in ok(hl("webhooks", "list", "--quiet")).out.split()

    # --json works before the command too, and prints one document.
    got = json.loads(ok(hl("--json", "webhooks", "get", "tables")).out)
    assert got["id"] == webhook_id and got["eventTypes"] == ["WEBHOOK.TEST"] and got["enabled"] is True

    updated = json.loads(ok(hl("webhooks", "update", "tables", "--disable", "--rate-limit", "5", "--json")).out)
    assert updated["enabled"] is False and updated["rateLimitPerS"] == 5 and updated["url"] == got["url"]
    assert fields(ok(hl("webhooks", "update", "tables", "--enable")).out)["enabled"] == "yes"

    rotated = json.loads(ok(hl("webhooks", "rotate-secret", "tables", "--grace", "0", "--json")).out)
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != shown["secret"]

    assert ok(hl("webhooks", "delete", "tables")).out.strip() == "deleted webhook tables"
    assert "NOT_FOUND" in fails(hl("webhooks", "get", "tables")).err


def test_paging(hl, receiver_process: Process) -> None:
    for n in range(3):
        ok(hl("webhooks", "create", f"page-{n}", "--url", receiver_process.url + "/page"))
    first = ok(hl("webhooks", "list", "--page-size", "2"))
    assert len(table(first.out)) == 2
    token = re.search(r"--page-token (\S+)", first.err).group(1)
    second = ok(hl("webhooks", "list", "--page-size", "2", "--page-token", token, "--quiet"))
    everything = ok(hl("webhooks", "list", "--page-size", "2", "--all", "--quiet")).out.split()
    assert [r["ID"] for r in table(first.out)] + second.out.split()[:1] == everything[:3]
    assert json.loads(ok(hl("webhooks", "list", "--page-size", "1", "--all", "--json")).out)["nextPageToken"] == ""


def test_flows_from_json_and_yaml_files(hl, tmp_path: Path, receiver_process: Process) -> None:
    ok(hl("webhooks", "create", "flow-hook", "--url", receiver_process.url + "/flows"))
    definition = tmp_path / "double.json"
    definition.write_text(json.dumps({"steps": [{"transform": "{doubled: [n, n]}"}]}))
    created = ok(hl("flows", "create", "double", "--name", "Double", "--definition", str(definition)))
    assert fields(created.out)["version"] == "1" and '"transform": "{doubled: [n, n]}"' in created.out

    linked = ok(hl("flows", "link", "double", "flow-hook"))
    assert linked.out.startswith("flow double sends its job events to flow-hook (wh_")
    assert re.fullmatch(r"flow-hook \(wh_\w+\)", fields(ok(hl("flows", "get", "double")).out)["webhooks"])
    assert json.loads(ok(hl("flows", "get", "double", "--json")).out)["webhookIds"][0].startswith("wh_")
    assert "to no webhook" in ok(hl("flows", "unlink", "double", "flow-hook")).out

    definition.write_text(json.dumps({"steps": [{"transform": "{tripled: [n, n, n]}"}]}))
    updated = json.loads(ok(hl("flows", "update", "double", "--definition", str(definition), "--json")).out)
    assert updated["version"] == 2
    assert "doubled" in ok(hl("flows", "get", "double", "--version", "1")).out
    row = next(r for r in table(ok(hl("flows", "list")).out) if r["ALIAS"] == "double")
    assert row["VERSION"] == "2" and row["NAME"] == "Double"

    yaml_file = tmp_path / "flow.yaml"
    yaml_file.write_text("steps:\n  - transform: '{seen: `true`}'\n")
    try:
        import yaml  # noqa: F401
    except ImportError:
        assert "pip install pyyaml" in fails(hl("flows", "create", "from-yaml", "--definition", str(yaml_file))).err
    else:
        assert fields(ok(hl("flows", "create", "from-yaml", "--definition", str(yaml_file))).out)["version"] == "1"

    assert "cannot read definition" in fails(hl("flows", "create", "x", "--definition", str(tmp_path / "no"))).err
    (tmp_path / "list.json").write_text("[1, 2]")
    assert "must be a JSON object" in fails(hl("flows", "create", "x", "--definition", str(tmp_path / "list.json"))).err
    assert ok(hl("flows", "delete", "double")).out.strip() == "deleted flow double"


def test_jobs(hl, tmp_path: Path) -> None:
    definition = tmp_path / "sum.json"
    definition.write_text(
        json.dumps(
            {
                "steps": [
                    {"fail_if": "length(items) == `0`", "message": "nothing to add"},
                    {"transform": "{total: sum(items)}"},
                ]
            }
        )
    )
    ok(hl("flows", "create", "sum", "--definition", str(definition)))

    started = hl("jobs", "start", "sum", "--input", '{"items": [1, 2]}', "--correlation-id", "c-1", "--wait", "--json")
    done = json.loads(ok(started).out)
    assert done["state"] == "JOB_STATE_COMPLETED" and done["output"] == {"total": 3.0}

    shown = ok(hl("jobs", "get", done["id"]))
    assert fields(shown.out)["state"] == "COMPLETED" and fields(shown.out)["code"] == "JOB_SUCCESS"
    assert '"total": 3' in shown.out  # whole numbers print as such

    (tmp_path / "empty.json").write_text('{"items": []}')
    failed = hl("jobs", "start", "sum", "--input-file", str(tmp_path / "empty.json"), "--wait")
    assert failed.code == 1 and fields(failed.out)["state"] == "ERROR"
    assert fields(failed.out)["message"] == "nothing to add"

    rows = table(ok(hl("jobs", "list", "--flow", "sum", "--state", "completed")).out)
    assert [r["ID"] for r in rows] == [done["id"]] and rows[0]["CORRELATION ID"] == "c-1"
    assert ok(hl("jobs", "list", "--correlation-id", "c-1", "--quiet")).out.split() == [done["id"]]

    # watch on an ended job: its state, once, and the command ends.
    watched = ok(hl("jobs", "watch", done["id"]))
    assert re.fullmatch(rf"\S+  {done['id']}  COMPLETED  JOB_SUCCESS  sum v1\n", watched.out)
    assert json.loads(ok(hl("jobs", "watch", done["id"], "--json")).out)["id"] == done["id"]

    waiting = json.loads(ok(hl("flows", "create", "slow", "--definition", _write(tmp_path, "slow"), "--json")).out)
    job = json.loads(ok(hl("jobs", "start", waiting["alias"], "--json")).out)
    canceled = json.loads(ok(hl("jobs", "cancel", job["id"], "--json")).out)
    assert canceled["state"] in ("JOB_STATE_CANCELED", "JOB_STATE_CANCELING")
    all_waiting = ok(hl("jobs", "cancel", "--all-waiting", "--flow", "slow"))
    assert re.fullmatch(r"canceled \d+ waiting job\(s\) of flow slow\n", all_waiting.out)

    assert "not valid JSON" in fails(hl("jobs", "start", "sum", "--input", "{items")).err
    assert "give the id" in fails(hl("jobs", "cancel")).err


def test_json_prints_whole_numbers_as_integers(hl, tmp_path: Path) -> None:
    """Protobuf keeps every JSON number a double; --json prints 5 as 5, as the
    tables and the webhook body do, and keeps 7.5 and 0.1 as they are."""
    definition = tmp_path / "priced.json"
    definition.write_text(json.dumps({"steps": [{"sleep_ms": 1}, {"transform": "{total: sum(items[].price), n: n}"}]}))
    flow = ok(hl("flows", "create", "priced", "--definition", str(definition), "--json")).out
    assert '"sleep_ms": 1\n' in flow and "1.0" not in flow

    given = '{"items": [{"price": 5}, {"price": 7.5}], "n": 0.1}'
    started = ok(hl("jobs", "start", "priced", "--input", given, "--wait", "--json")).out
    assert '"price": 5\n' in started and '"price": 7.5\n' in started and '"total": 12.5' in started
    assert '"n": 0.1' in started and "5.0" not in started
    job_id = json.loads(started)["id"]
    assert '"price":5}' in ok(hl("jobs", "watch", job_id, "--json")).out  # one compact line
    listed = ok(hl("jobs", "list", "--flow", "priced", "--json")).out
    assert '"price": 5\n' in listed and "5.0" not in listed


def _write(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"steps": [{"sleep_ms": 10000}]}))
    return str(path)


def test_deliveries_list_newest_first_unless_asked_for_the_oldest(hl, receiver_process: Process) -> None:
    url = receiver_process.url + "/ordered"
    ok(hl("webhooks", "create", "ordered", "--url", url, "-e", "WEBHOOK.TEST"))
    sent = [json.loads(ok(hl("webhooks", "test", "ordered", "--json")).out)["delivery"]["id"] for _ in range(3)]
    newest_first = [r["ID"] for r in table(ok(hl("deliveries", "list", "--webhook", "ordered")).out)]
    assert newest_first == sent[::-1]
    assert ok(hl("deliveries", "list", "--webhook", "ordered", "--oldest-first", "--quiet")).out.split() == sent
    # Paging goes on in the order asked for.
    first = ok(hl("deliveries", "list", "--webhook", "ordered", "--page-size", "2"))
    assert [r["ID"] for r in table(first.out)] == sent[:0:-1]
    token = re.search(r"--page-token (\S+)", first.err).group(1)  # type: ignore[union-attr]
    rest = ok(hl("deliveries", "list", "--webhook", "ordered", "--page-size", "2", "--page-token", token, "-q"))
    assert rest.out.split() == sent[:1]


def test_deliveries(hl, client: Client, receiver_process: Process) -> None:
    url = receiver_process.url + "/deliveries"
    ok(hl("webhooks", "create", "deliveries", "--url", url, "-e", "WEBHOOK.TEST", "--secret", SECRET))
    sent = ok(hl("webhooks", "test", "deliveries", "--message", "hello", "--wait"))
    shown = fields(sent.out)
    assert shown["state"] == "SUCCEEDED" and shown["attempts"] == "1" and shown["last status"] == "200"
    delivery_id = shown["id"]

    rows = table(ok(hl("deliveries", "list", "--webhook", "deliveries")).out)
    assert [(r["ID"], r["WEBHOOK"], r["STATE"], r["LAST"]) for r in rows] == [
        (delivery_id, "deliveries", "SUCCEEDED", "200")
    ]
    got = json.loads(ok(hl("deliveries", "get", delivery_id, "--json")).out)
    assert got["state"] == "DELIVERY_STATE_SUCCEEDED"
    assert fields(ok(hl("deliveries", "get", delivery_id)).out)["webhook"] == f"deliveries ({got['webhookId']})"
    assert ok(hl("deliveries", "list", "--webhook", "deliveries", "--state", "failed", "--since", "1h")).out.startswith(
        "no deliveries"
    )

    attempts = table(ok(hl("deliveries", "attempts", delivery_id)).out)
    assert [(a["#"], a["STATUS"]) for a in attempts] == [("1", "200")]
    assert '"status": 200' in attempts[0]["RESPONSE"]

    retried = json.loads(ok(hl("deliveries", "retry", delivery_id, "--json")).out)
    assert retried["id"] == delivery_id
    recovered = ok(hl("deliveries", "recover", "deliveries", "--since", "1h"))
    assert re.fullmatch(r"re-queued 0 failed deliveries of webhook deliveries\n", recovered.out)
    since_2020 = hl("deliveries", "recover", "deliveries", "--since", "2020-01-01T00:00:00Z", "--json")
    assert json.loads(ok(since_2020).out) == {"recoveredCount": 0}
    # The message reached the receiver, signed both ways.
    line = receiver_process.wait_for(r'"path": "/deliveries"')[0].string
    request = json.loads(line)
    assert request["body"]["eventType"] == "WEBHOOK.TEST" and request["body"]["data"]["message"] == "hello"
    assert request["signatures"] == {"standard_webhooks": "verified", "x_webhook_signature": "verified"}


def test_events(hl, receiver_process: Process) -> None:
    types = ok(hl("events", "types"))
    rows = {r["TYPE"]: r["DESCRIPTION"] for r in table(types.out)}
    assert {"JOB.COMPLETED", "JOB.ERROR", "WEBHOOK.TEST"} <= set(rows) and rows["WEBHOOK.TEST"]
    assert ok(hl("events", "types", "--quiet")).out.split() == list(rows)
    catalog = json.loads(ok(hl("events", "types", "--json")).out)["eventTypes"]
    assert [t["name"] for t in catalog] == list(rows) and all("dataSchema" in t for t in catalog)

    ok(hl("webhooks", "create", "evented", "--url", receiver_process.url + "/events", "-e", "WEBHOOK.TEST"))
    sent = json.loads(ok(hl("webhooks", "test", "evented", "--message", "look", "--json")).out)
    event_id, webhook_id = sent["event"]["id"], sent["delivery"]["webhookId"]

    listed = table(ok(hl("events", "list", "--type", "WEBHOOK.TEST", "--since", "1h")).out)
    row = next(r for r in listed if r["ID"] == event_id)
    assert row["TYPE"] == "WEBHOOK.TEST" and row["WEBHOOK"] == webhook_id
    assert event_id in ok(hl("events", "list", "--type", "WEBHOOK.TEST", "--quiet", "--all")).out.split()
    as_json = json.loads(ok(hl("events", "list", "--type", "WEBHOOK.TEST", "--json", "--all")).out)
    assert event_id in [e["id"] for e in as_json["events"]] and as_json["nextPageToken"] == ""

    shown = ok(hl("events", "get", event_id))
    assert fields(shown.out)["type"] == "WEBHOOK.TEST" and fields(shown.out)["webhook"] == webhook_id
    assert '"message": "look"' in shown.out  # the body, as pretty JSON
    got = json.loads(ok(hl("events", "get", event_id, "--json")).out)
    assert json.loads(base64.b64decode(got["body"]))["data"]["message"] == "look"

    assert fails(hl("events", "get", "evt_missing")).err.strip() == "hookline: NOT_FOUND: event 'evt_missing' not found"
    assert "NOT_FOUND: flow 'no-such-flow'" in fails(hl("events", "list", "--flow", "no-such-flow")).err
    assert "not a time: 'soon'" in hl("events", "list", "--since", "soon").err


def test_documents_nested_too_deep_are_refused_with_the_limit(hl, tmp_path: Path) -> None:
    """Deep enough, the JSON parser raised RecursionError ("unexpected error") and
    protobuf its own "Message too deep"; the server takes 32 levels by default."""
    (tmp_path / "flat.json").write_text('{"steps": []}')
    ok(hl("flows", "create", "deep-inputs", "--definition", str(tmp_path / "flat.json")))

    def nested(depth: int) -> str:
        return "[" * depth + "]" * depth

    (tmp_path / "deep.json").write_text(nested(100_000))
    (tmp_path / "deep-100.json").write_text(nested(100))
    (tmp_path / "deep-definition.json").write_text('{"steps": [], "x": ' + nested(2_000) + "}")
    (tmp_path / "definition-100.json").write_text('{"steps": [], "x": ' + nested(100) + "}")
    for argv, where in [
        (("jobs", "start", "deep-inputs", "--input-file", str(tmp_path / "deep.json")), "input"),
        (("jobs", "start", "deep-inputs", "--input-file", str(tmp_path / "deep-100.json")), "input"),
        (("jobs", "start", "deep-inputs", "--input", nested(2_000)), "--input"),
        (("flows", "create", "deep", "--definition", str(tmp_path / "deep-definition.json")), "definition"),
        (("flows", "update", "deep-inputs", "--definition", str(tmp_path / "definition-100.json")), "definition"),
    ]:
        result = fails(hl(*argv))
        assert where in result.err and "nested" in result.err, result.err
        assert "hookline takes JSON at most 32 levels deep by default" in result.err, result.err
        assert "unexpected error" not in result.err and len(result.err.splitlines()) == 1
    endless = fails(
        hl("jobs", "start", "deep-inputs", "--input-file", "/dev/zero")
    )  # used to read until memory ran out
    assert endless.err == "hookline: input /dev/zero is over 64 MiB; a server takes 1 MiB by default\n"
    assert ok(hl("jobs", "list", "--flow", "deep-inputs", "--quiet")).out == ""  # nothing was started


def test_an_imported_secret_is_never_printed_back(hl, receiver_process: Process) -> None:
    url = receiver_process.url + "/imported"
    created = ok(hl("webhooks", "create", "imported", "--url", url, "--secret", SECRET))
    assert fields(created.out)["secret"] == "(the one you gave, not shown)"
    assert SECRET not in created.out + created.err and "shown only now" not in created.err
    as_json = ok(hl("webhooks", "create", "imported-json", "--url", url, "--secret", SECRET, "--json"))
    assert SECRET not in as_json.out and json.loads(as_json.out)["secret"] == ""
    # A generated one is printed, once, at creation.
    generated = ok(hl("webhooks", "create", "generated", "--url", url))
    assert fields(generated.out)["secret"].startswith("whsec_") and "shown only now" in generated.err


def test_credentials_in_extra_headers_are_not_shown_to_people(hl, receiver_process: Process) -> None:
    url = receiver_process.url + "/headers"
    created = ok(hl("webhooks", "create", "with-headers", "--url", url, "-H", "Authorization=Bearer sk_live_123"))
    headers = ("-H", "Authorization=Bearer sk_live_123", "-H", "X-Api-Key: key_456", "-H", "X-Tenant=acme")
    updated = ok(hl("webhooks", "update", "with-headers", *headers))
    shown = ok(hl("webhooks", "get", "with-headers"))
    for result in (created, updated, shown):
        assert "sk_live_123" not in result.out and "key_456" not in result.out
    assert fields(shown.out)["headers"] == (
        "Authorization: (set, not shown), X-Api-Key: (set, not shown), X-Tenant: acme"
    )
    # Scripts still get the webhook as it is.
    assert json.loads(ok(hl("webhooks", "get", "with-headers", "--json")).out)["headers"]["X-Api-Key"] == "key_456"


def test_flows_set_webhooks(hl, tmp_path: Path, receiver_process: Process) -> None:
    for alias in ("set-a", "set-b"):
        ok(hl("webhooks", "create", alias, "--url", receiver_process.url + "/" + alias))
    (tmp_path / "set.json").write_text('{"steps": []}')
    ok(hl("flows", "create", "set-flow", "--definition", str(tmp_path / "set.json"), "-w", "set-a"))

    both = ok(hl("flows", "set-webhooks", "set-flow", "set-b", "set-a"))
    assert re.fullmatch(r"flow set-flow sends its job events to set-(a|b) \(wh_\w+\), set-(a|b) \(wh_\w+\)\n", both.out)
    only_b = json.loads(ok(hl("flows", "set-webhooks", "set-flow", "set-b", "--json")).out)
    assert only_b["webhookIds"] == [json.loads(ok(hl("webhooks", "get", "set-b", "--json")).out)["id"]]
    assert ok(hl("flows", "set-webhooks", "set-flow")).out == "flow set-flow sends its job events to no webhook\n"

    missing = fails(hl("flows", "set-webhooks", "set-flow", "set-a", "no-such-hook"))
    assert "NOT_FOUND: webhook 'no-such-hook' not found" in missing.err
    assert json.loads(ok(hl("flows", "get", "set-flow", "--json")).out)["webhookIds"] == []  # unchanged
    assert "NOT_FOUND: flow 'no-such-flow'" in fails(hl("flows", "set-webhooks", "no-such-flow", "set-a")).err


# --- the receiver exercising retries ------------------------------------------------------


def test_receiver_fail_first_makes_the_delivery_take_three_attempts(hl, client: Client) -> None:
    receiver = Process([*HOOKLINE, "receiver", "--port", "0", "--secret", SECRET, "--fail-first", "2"], env=cli_env())
    try:
        port = receiver.wait_for(r"listening on http://127\.0\.0\.1:(\d+)/.*500 to the first 2", "err")[0].group(1)
        url = f"http://127.0.0.1:{port}/retries"
        ok(hl("webhooks", "create", "retries", "--url", url, "-e", "WEBHOOK.TEST", "--secret", SECRET))
        delivered = ok(hl("webhooks", "test", "retries", "--wait"))
        assert fields(delivered.out)["attempts"] == "3" and fields(delivered.out)["state"] == "SUCCEEDED"
        attempts = json.loads(ok(hl("deliveries", "attempts", fields(delivered.out)["id"], "--json")).out)["attempts"]
        assert [a["statusCode"] for a in attempts] == [500, 500, 200]

        receiver.wait_for(r"^  answering 200$", count=1)
        answers = re.findall(r"^  answering (\d+)(.*)$", receiver.out, re.M)
        assert answers == [("500", " (--fail-first)"), ("500", " (--fail-first)"), ("200", "")]
        counted = re.findall(r"^  x-webhook-delivery-attempt: (\d+)$", receiver.out, re.M | re.I)
        assert counted == ["0", "1", "2"]
        assert receiver.out.count("ok  Standard Webhooks signature: verified") == 3
        assert receiver.out.count("ok  X-Webhook-Signature (DecisionRules): verified") == 3
    finally:
        code = receiver.stop(signal.SIGINT)
    assert code == 0 and "stopped after 3 request(s)" in receiver.err and "Traceback" not in receiver.err


# --- watches --------------------------------------------------------------------------------


def test_deliveries_watch_prints_each_change_as_it_happens(
    hl, address: str, hookline_app: Hookline, receiver_process: Process
) -> None:
    ok(hl("webhooks", "create", "watched", "--url", receiver_process.url + "/watched", "-e", "WEBHOOK.TEST"))
    env = cli_env(HOOKLINE_ADDRESS=address, HOOKLINE_API_KEY=hookline_app.admin_key)
    human = Process([*HOOKLINE, "deliveries", "watch", "--webhook", "watched"], env=env)
    as_json = Process([*HOOKLINE, "deliveries", "watch", "--webhook", "watched", "--json"], env=env)
    try:
        human.wait_for("^watching deliveries of webhook watched", "err")
        first = json.loads(as_json.wait_for(r"^\{")[0].string)
        assert first["kind"] == "DELIVERY_EVENT_KIND_SYNC"

        delivery = json.loads(ok(hl("webhooks", "test", "watched", "--json")).out)["delivery"]["id"]
        human.wait_for(rf"SUCCEEDED\s+{delivery}\s+WEBHOOK\.TEST\s+-> watched\s+after 1 attempt")
        kinds = [re.split(r"\s+", line)[1] for line in human.out.splitlines()]
        assert kinds == ["QUEUED", "ATTEMPT_STARTED", "ATTEMPT_RESULT", "SUCCEEDED"]
        result = rf"ATTEMPT_RESULT\s+{delivery}\s+WEBHOOK\.TEST\s+-> watched\s+attempt 1: 200 in \d+ ms"
        assert re.search(result, human.out)
        assert "\033[" not in human.out  # no colour off a terminal

        as_json.wait_for('"kind":"DELIVERY_EVENT_KIND_SUCCEEDED"')
        changes = [json.loads(line) for line in as_json.out.splitlines()]
        assert [c["kind"].removeprefix("DELIVERY_EVENT_KIND_") for c in changes] == [
            "SYNC",
            "QUEUED",
            "ATTEMPT_STARTED",
            "ATTEMPT_RESULT",
            "SUCCEEDED",
        ]
        assert changes[3]["attempt"]["statusCode"] == 200 and changes[-1]["delivery"]["id"] == delivery
    finally:
        codes = [human.stop(signal.SIGINT), as_json.stop(signal.SIGINT)]
    assert codes == [0, 0] and "Traceback" not in human.err + as_json.err


def test_deliveries_watch_says_what_it_watches_once_not_at_each_heartbeat(
    hl, address: str, hookline_app: Hookline, hookline_settings: Settings, receiver_process: Process
) -> None:
    """The server sends a SYNC after each second of silence here (the tests'
    heartbeat); the --json watch, started after the other, shows them."""
    ok(hl("webhooks", "create", "heartbeats", "--url", receiver_process.url + "/heartbeats", "-e", "WEBHOOK.TEST"))
    env = cli_env(HOOKLINE_ADDRESS=address, HOOKLINE_API_KEY=hookline_app.admin_key)
    human = Process([*HOOKLINE, "deliveries", "watch", "--webhook", "heartbeats"], env=env)
    try:
        human.wait_for("^watching deliveries of webhook heartbeats", "err")
        later = Process([*HOOKLINE, "deliveries", "watch", "--webhook", "heartbeats", "--json"], env=env)
        try:
            # Two heartbeats of the later stream: the first stream has had its own by then.
            later.wait_for(
                '"kind":"DELIVERY_EVENT_KIND_SYNC"', count=3, timeout=10 * hookline_settings.stream_heartbeat_s
            )
        finally:
            later.stop()
        delivery = json.loads(ok(hl("webhooks", "test", "heartbeats", "--json")).out)["delivery"]["id"]
        human.wait_for(rf"SUCCEEDED\s+{delivery}")
    finally:
        code = human.stop(signal.SIGINT)
    assert code == 0 and human.err.count("watching deliveries") == 1, human.err


def test_keys_revoke_ends_the_open_streams_of_the_key(
    client: Client, connect: Callable[[str], Client], hookline_settings: Settings, receiver_process: Process
) -> None:
    """`hookline keys revoke` is another process: on the embedded database the
    server hears of it by the revocation counter, on PostgreSQL by NOTIFY."""
    hook = client.webhooks.CreateWebhook(
        CreateWebhookRequest(
            webhook=Webhook(alias="revoked-watch", url=receiver_process.url + "/revoked", event_types=["WEBHOOK.TEST"])
        )
    ).webhook
    definition = struct_pb2.Struct()
    definition.update({"steps": [{"sleep_ms": 30_000}]})
    flow = client.flows.CreateFlow(CreateFlowRequest(flow=Flow(alias="revoked-watch", definition=definition)))
    job = client.jobs.StartJob(StartJobRequest(flow=flow.id))
    key = spaces.create_key(spaces.space_id_by_name(spaces.DEFAULT_SPACE), "management")
    holder = connect(key.token)
    changes = Watching(holder.webhooks.WatchDeliveries(WatchDeliveriesRequest(), timeout=60))
    job_states = Watching(holder.jobs.WatchJob(WatchJobRequest(id=job.id), timeout=60))
    for watching in (changes, job_states):
        watching.wait_for(bool, what="the first message")

    storage = ["--data-dir", str(hookline_settings.data_dir)]
    storage += ["--database", hookline_settings.database] if hookline_settings.database else []
    revoke = subprocess.run(
        [*HOOKLINE, "keys", "revoke", key.key_id, *storage], env=cli_env(), capture_output=True, text=True, timeout=60
    )
    assert revoke.returncode == 0, revoke.stderr
    # Committed after the revocation: neither may reach the key's streams.
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
    client.jobs.CancelJob(CancelJobRequest(id=job.id))

    for watching in (changes, job_states):
        error = watching.ended(timeout=10)
        assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED, error
        assert "revoked" in error.details()
    assert sent.delivery.id not in {m.delivery.id for m in changes.messages}
    assert len(job_states.messages) == 1  # its state when watched, nothing since


# --- errors -----------------------------------------------------------------------------------


def test_invalid_argument_prints_each_field_violation(hl) -> None:
    result = fails(hl("webhooks", "create", "9-starts-with-a-digit", "--url", "ftp://example.com", "-e", "NOPE"))
    assert result.code == 1 and result.out == ""
    lines = result.err.splitlines()
    assert lines[0] == "hookline: INVALID_ARGUMENT: 3 problems with the request"
    for field in EVENT_FIELDS:
        assert any(line.startswith(f"  - {field}: ") for line in lines[1:]), result.err
    assert "  - webhook.url: must be an http or https URL, not ftp:" in lines


def test_other_server_errors_print_their_status_and_message(hl, tmp_path: Path) -> None:
    result = fails(hl("jobs", "get", "job_missing"))
    assert result.err.strip() == "hookline: NOT_FOUND: job 'job_missing' not found"

    (tmp_path / "nothing.json").write_text('{"steps": []}')
    ok(hl("flows", "create", "nothing", "--definition", str(tmp_path / "nothing.json")))
    ended = json.loads(ok(hl("jobs", "start", "nothing", "--wait", "--json")).out)
    refused = fails(hl("jobs", "cancel", ended["id"]))
    assert refused.err.startswith("hookline: FAILED_PRECONDITION: ")


def test_unauthenticated_says_what_to_do(hl) -> None:
    result = fails(hl("--key", "hl_not_a_real_key", "webhooks", "list"))
    assert result.err.startswith("hookline: UNAUTHENTICATED: ")
    assert "HOOKLINE_API_KEY" in result.err and "--key" in result.err


def test_a_missing_key_is_a_clear_message(
    capsys: pytest.CaptureFixture[str], address: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HOOKLINE_API_KEY", raising=False)
    monkeypatch.delenv("HOOKLINE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    result = fails(run_cli(capsys, "--address", address, "webhooks", "list"))
    assert "no API key" in result.err and "HOOKLINE_API_KEY" in result.err and "--key" in result.err


KEY_FORM = "is malformed (a key looks like hl_<key id>_<secret>)"


def test_a_malformed_key_is_refused_before_any_call_naming_where_it_came_from(address: str, tmp_path: Path) -> None:
    """A key with a line break (or a file that holds none) used to reach gRPC,
    which logged C-core lines and answered INTERNAL: Invalid metadata."""
    not_a_key = tmp_path / "passwd"
    not_a_key.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    in_folder = tmp_path / "folder"
    (in_folder / ".hookline").mkdir(parents=True)
    (in_folder / ".hookline" / "admin.key").write_text("hl_secretpart\nsecondline\n")
    cases = [
        (["--key", "hl_secretpart\nsecondline"], {}, "the API key given with --key"),
        (["--key-file", str(not_a_key)], {}, f"the API key in --key-file {not_a_key}"),
        ([], {"HOOKLINE_API_KEY": "hl_secretpart\nsecondline"}, "the API key in HOOKLINE_API_KEY"),
        ([], {}, "the API key in .hookline/admin.key"),
    ]
    for options, env, source in cases:
        result = subprocess.run(
            [*HOOKLINE, "--address", address, *options, "jobs", "list"],
            env=cli_env(**env),
            cwd=in_folder,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1 and result.stdout == "", result
        # One line: no gRPC core log, no INTERNAL, and never the key itself.
        assert result.stderr == f"hookline: {source} {KEY_FORM}\n", result.stderr
        assert "secretpart" not in result.stderr and "root:" not in result.stderr


def test_a_key_file_that_cannot_be_read_says_why_and_names_the_flag(
    hl, hookline_app: Hookline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nonexistent"
    assert fails(hl("--key-file", str(missing), "jobs", "list")).err == (
        f"hookline: cannot read --key-file {missing}: No such file or directory\n"
    )
    assert fails(hl("jobs", "list", "--key-file", str(tmp_path))).err == (
        f"hookline: cannot read --key-file {tmp_path}: Is a directory\n"
    )
    assert fails(hl("--key", "", "jobs", "list")).err == "hookline: the API key given with --key is empty\n"
    # The flag wins over HOOKLINE_API_KEY, as flags do.
    key_file = tmp_path / "admin.key"
    key_file.write_text(hookline_app.admin_key + "\n")
    monkeypatch.setenv("HOOKLINE_API_KEY", "hl_000000000000_notarealsecret")
    ok(hl("--key-file", str(key_file), "jobs", "list"))


def test_no_server_is_a_clear_message(hl) -> None:
    port = free_port()
    result = fails(hl("--address", f"127.0.0.1:{port}", "webhooks", "list"))
    assert result.err.startswith(f"hookline: cannot reach hookline at 127.0.0.1:{port} (")
    assert "hookline serve" in result.err


def test_an_unknown_host_gets_the_hint_of_the_other_connection_errors(hl) -> None:
    result = fails(hl("--address", "nosuchhost.invalid:50051", "webhooks", "list"))
    assert result.err.startswith("hookline: cannot reach hookline at nosuchhost.invalid:50051 (")
    assert "is `hookline serve` running? set --address or HOOKLINE_ADDRESS" in result.err


def test_usage_errors_exit_2(hl) -> None:
    assert hl("webhooks").code == 2
    assert hl("webhooks", "create", "no-url").code == 2
    result = hl("deliveries", "recover", "x", "--since", "yesterday")
    assert result.code == 2 and "not a time: 'yesterday'" in result.err
    assert "nothing to update" in fails(hl("webhooks", "update", "anything")).err
    # Values a request field cannot hold are usage errors too, not "unexpected error".
    for argv, said in [
        (("webhooks", "update", "anything", "--rate-limit", "-5"), "--rate-limit: must be from 0 to 4294967295"),
        (("jobs", "list", "--page-size", "9999999999"), "--page-size: must be from -2147483648 to 2147483647"),
        (("jobs", "start", "x", "--version", "1e3"), "--version: not a whole number: '1e3'"),
        (("--timeout", "0", "webhooks", "list"), "--timeout: must be a number of seconds above 0 and at most 86400"),
        (("receiver", "--port", "99999"), "--port: must be from 0 to 65535, not 99999"),
    ]:
        result = hl(*argv)
        assert result.code == 2 and said in result.err and "Traceback" not in result.err, result.err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        # gRPC's deadline overflows: every call used to fail at once with "Deadline Exceeded".
        (("--timeout", "100000000000", "jobs", "list"), "--timeout: must be a number of seconds above 0 and at most"),
        (("jobs", "list", "--timeout", "inf"), "--timeout: must be a number of seconds above 0 and at most"),
        (("--timeout", "nan", "jobs", "list"), "--timeout: must be a number of seconds above 0 and at most"),
        (("webhooks", "rotate-secret", "x", "--grace", "9" * 400), "--grace: too long a duration: '999"),
        (("events", "list", "--since", "1000000d"), "--since: 1000000d ago is before the year 1"),
        (("deliveries", "list", "--until", "0001-01-01T00:00:00+14:00"), "--until: not a time in the years 1 to 9999"),
        (("deliveries", "recover", "x", "--since", "9999-12-31T23:59:59-14:00"), "--since: not a time in the years"),
        (("receiver", "--delay-ms", str(10**20)), "--delay-ms: must be from 0 to 3600000"),
        (("receiver", "--delay-ms", "-1"), "--delay-ms: must be from 0 to 3600000, not -1"),
        (("receiver", "--status", "1000"), "--status: must be from 100 to 599, not 1000"),
        (("receiver", "--fail-first", "-2"), "--fail-first: must be from 0 to"),
        (("receiver", "--tolerance", "-300"), "--tolerance: must be from 0 to"),
    ],
)
def test_numbers_and_durations_out_of_range_are_usage_errors(hl, argv: tuple[str, ...], said: str) -> None:
    result = hl(*argv)
    assert result.code == 2 and said in result.err, result.err
    assert "Traceback" not in result.err and "unexpected error" not in result.err


def test_a_bad_option_after_a_command_shows_that_command_s_usage(hl) -> None:
    """argparse reported arguments nobody knew from the top-level parser, with its usage."""
    unknown = hl("webhooks", "update", "gen", "--enabled", "maybe")
    assert unknown.code == 2 and unknown.out == ""
    assert unknown.err.splitlines() == [
        "usage: hookline webhooks update [options] id",
        "hookline webhooks update: error: unrecognized arguments: --enabled maybe (did you mean --enable?)",
    ]
    bad_value = hl("webhooks", "update", "gen", "--rate-limit", "x")
    assert bad_value.err.splitlines() == [
        "usage: hookline webhooks update [options] id",
        "hookline webhooks update: error: argument --rate-limit: not a whole number: 'x'",
    ]
    assert hl("flows", "link").err.splitlines() == [
        "usage: hookline flows link [options] flow WEBHOOK [WEBHOOK ...]",
        "hookline flows link: error: the following arguments are required: flow, WEBHOOK",
    ]
    assert hl("jobs", "list", "extra").err.splitlines()[0] == "usage: hookline jobs list [options]"


def test_arguments_that_are_not_utf8_are_usage_errors(hl) -> None:
    """Bytes that are not UTF-8 arrive as lone surrogates, which no request can carry."""
    undecodable = "a\udcff"  # what Python makes of the bytes 61 ff
    by_position = hl("jobs", "get", undecodable)
    assert by_position.code == 2 and "hookline: error: argument 3 is not UTF-8 text" in by_position.err
    for argv in (("--key", undecodable, "jobs", "list"), ("jobs", "list", f"--key={undecodable}")):
        result = hl(*argv)
        assert result.code == 2 and "error: the value of --key is not UTF-8 text" in result.err, result.err
        assert undecodable not in result.err and "\\udcff" not in result.err  # a key is never echoed
    named = hl("jobs", "start", "x", "--correlation-id", undecodable)
    assert named.code == 2 and "the value of --correlation-id is not UTF-8 text" in named.err


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("127.0.0.1:99999", "--address must be HOST:PORT with a port from 1 to 65535, not '127.0.0.1:99999'"),
        ("127.0.0.1", "--address must be HOST:PORT with a port from 1 to 65535, not '127.0.0.1'"),
        ("localhost:0", "--address must be HOST:PORT with a port from 1 to 65535, not 'localhost:0'"),
        ("http://127.0.0.1:50051/", "--address is HOST:PORT, without http:// (try 127.0.0.1:50051)"),
        ("::1:50051", "--address: write an IPv6 address in brackets, as in [::1]:50051"),
    ],
)
def test_an_address_that_is_not_host_and_port_is_refused(hl, given: str, said: str) -> None:
    """gRPC took `host` alone as port 443 and wrapped 99999 round to 34463: calls went
    somewhere else and failed with a message about that other place."""
    result = fails(hl("--address", given, "webhooks", "list"))
    assert result.err == f"hookline: {said}\n"


def test_a_bad_hookline_address_is_named(hl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKLINE_ADDRESS", "localhost")
    assert fails(hl("webhooks", "list")).err.startswith("hookline: HOOKLINE_ADDRESS must be HOST:PORT")


def test_the_client_alone_is_enough(address: str, hookline_app: Hookline, tmp_path: Path) -> None:
    """With none of the server's packages, googleapis-common-protos or PyYAML
    importable, the people's commands work and still show field violations; the
    operator commands say which extra they need."""
    blocked = ("google.rpc", "grpc_status", "grpc_health", "grpc_reflection", "yaml", "hookline.server", "peewee")
    script = tmp_path / "client_only.py"
    script.write_text(
        "import sys\n"
        f"BLOCKED = {blocked!r}\n"
        "class Blocker:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if any(name == b or name.startswith(b + '.') for b in BLOCKED):\n"
        "            raise ImportError(f'{name} is not installed')\n"
        "sys.meta_path.insert(0, Blocker())\n"
        "from hookline.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "assert not any(m == b or m.startswith(b + '.') for m in sys.modules for b in BLOCKED)\n"
        "sys.exit(code)\n"
    )
    env = cli_env(HOOKLINE_ADDRESS=address, HOOKLINE_API_KEY=hookline_app.admin_key)

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), *argv], env=env, capture_output=True, text=True, timeout=60)

    listed = run("webhooks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "webhooks" in json.loads(listed.stdout)
    refused = run("webhooks", "create", "bad alias", "--url", "https://example.com/h")
    assert refused.returncode == 1 and "  - webhook.alias: " in refused.stderr and "Traceback" not in refused.stderr
    (tmp_path / "f.yaml").write_text("steps: []\n")
    no_yaml = run("flows", "create", "y", "--definition", str(tmp_path / "f.yaml"))
    assert no_yaml.returncode == 1 and "pip install pyyaml" in no_yaml.stderr
    serve = run("serve")
    assert serve.returncode == 2 and "pip install hookline[server]" in serve.stderr


# --- the receiver's checks --------------------------------------------------------------------------


def test_receiver_reports_tampered_and_unsigned_requests(receiver_process: Process) -> None:
    body = b'{"eventType":"WEBHOOK.TEST"}'
    headers = signing.signature_headers([SECRET], "evt_local", int(time.time()), body, 1)
    tampered = urllib.request.Request(
        receiver_process.url + "/tampered", data=body.replace(b"TEST", b"FAKE"), headers=headers, method="POST"
    )
    with urllib.request.urlopen(tampered) as response:
        assert response.status == 200
    unsigned = urllib.request.Request(receiver_process.url + "/unsigned", data=b"plain text", method="PUT")
    with urllib.request.urlopen(unsigned) as response:
        assert response.status == 200

    lines = [m.string for m in receiver_process.wait_for(r'"path": "/(tampered|unsigned)"', count=2)]
    got = {request["path"]: request for request in map(json.loads, lines)}
    assert got["/tampered"]["signatures"] == {
        "standard_webhooks": "FAILED: no matching signature",
        "x_webhook_signature": "FAILED: no matching signature",
    }
    assert got["/unsigned"]["method"] == "PUT" and got["/unsigned"]["body"] == "plain text"
    assert got["/unsigned"]["signatures"]["standard_webhooks"].startswith("missing")


def test_receiver_answers_a_bad_content_length_without_a_traceback(receiver_process: Process) -> None:
    host, port = receiver_process.url.removeprefix("http://").split(":")
    answers = []
    for length in ("abc", "9" * 30):
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(f"POST /bad HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
            answers.append(connection.makefile("rb").readline())
    assert answers[0].startswith(b"HTTP/1.1 400 ") and answers[1].startswith(b"HTTP/1.1 413 "), answers
    receiver_process.wait_for("POST /bad: the body is 9{30} bytes; this receiver reads at most", "err")
    assert "POST /bad: Content-Length must be a number of bytes, not 'abc'" in receiver_process.err
    assert "Traceback" not in receiver_process.err
    # It goes on receiving.
    with urllib.request.urlopen(urllib.request.Request(receiver_process.url + "/after", data=b"{}")) as response:
        assert response.status == 200


def test_receiver_refuses_bad_options(tmp_path: Path) -> None:
    env = cli_env()
    bad_secret = subprocess.run(
        [*HOOKLINE, "receiver", "--port", "0", "--secret", "not-a-secret"], env=env, capture_output=True, text=True
    )
    assert bad_secret.returncode == 1
    assert "hookline: --secret: webhook secret must start with 'whsec_'" in bad_secret.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [*HOOKLINE, "receiver", "--port", str(port)], env=env, capture_output=True, text=True, timeout=30
        )
    assert busy.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert "Traceback" not in bad_secret.stderr + busy.stderr


# --- on a terminal ------------------------------------------------------------------------------


def test_on_a_terminal_watches_are_coloured_and_waits_show_progress(
    hl, address: str, hookline_app: Hookline, tmp_path: Path
) -> None:
    (tmp_path / "nap.json").write_text(json.dumps({"steps": [{"sleep_ms": 800}, {"transform": "`42`"}]}))
    ok(hl("flows", "create", "nap", "--definition", str(tmp_path / "nap.json")))
    env = cli_env(HOOKLINE_ADDRESS=address, HOOKLINE_API_KEY=hookline_app.admin_key)
    del env["NO_COLOR"]

    code, shown = run_on_terminal([*HOOKLINE, "jobs", "start", "nap", "--wait"], env=env)
    assert code == 0, shown
    job_id = re.search(r"started (job_\w+); waiting", shown).group(1)
    assert f"\r\x1b[K| {job_id} " in shown or f"\r\x1b[K/ {job_id} " in shown  # the spinner's state line
    assert re.search(r"state:\s*\x1b\[0m \x1b\[1;32mCOMPLETED\x1b\[0m", shown), repr(shown)

    code, watched = run_on_terminal([*HOOKLINE, "jobs", "watch", job_id], env=env)
    assert code == 0 and f"{job_id}  \x1b[1;32mCOMPLETED\x1b[0m" in watched, repr(watched)

    code, plain = run_on_terminal([*HOOKLINE, "jobs", "watch", job_id], env={**env, "NO_COLOR": "1"})
    assert code == 0 and "\x1b[" not in plain and f"{job_id}  COMPLETED  JOB_SUCCESS" in plain


# --- parts ----------------------------------------------------------------------------------------


def test_field_violations_are_read_from_the_status_trailer() -> None:
    """The CLI's own reading of grpc-status-details-bin matches googleapis' messages."""
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    from hookline.cli._errors import Violation, violations_from_trailer

    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="webhook.url", description="is required"),
            error_details_pb2.BadRequest.FieldViolation(field="webhook.alias", description="is too long"),
        ]
    )
    other, detail = any_pb2.Any(), any_pb2.Any()
    other.Pack(error_details_pb2.ErrorInfo(reason="X"))
    detail.Pack(bad)
    status = status_pb2.Status(code=3, message="bad", details=[other, detail])
    assert violations_from_trailer(status.SerializeToString()) == (
        Violation("webhook.url", "is required"),
        Violation("webhook.alias", "is too long"),
    )
    assert violations_from_trailer(b"\xff\xff not a status") == ()


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("500ms", 0.5), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400)]
)
def test_durations(text: str, seconds: float) -> None:
    from hookline.cli._values import seconds as parse

    assert parse(text) == seconds
