"""The web console in a real browser (Debian's Chromium, driven by Playwright):
signing in, live deliveries, Redeliver, and what it refuses — other keys, other
spaces' ids, forms without their CSRF token, hostile parameters."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from integration.helpers import make_flow, unique, value, wait_job
from playwright.sync_api import BrowserContext, Page, expect

from hookline import signing
from hookline.client import (
    Client,
    CreateWebhookRequest,
    GetWebhookRequest,
    SendTestEventRequest,
    StartJobRequest,
    Webhook,
)
from hookline.server.console import Console
from hookline.server.storage import spaces

from .conftest import shot, sign_in

SECRET = signing.generate_secret()
RECEIVER_TOKEN = "receiver-token-" + unique()


def make_hook(client: Client, receiver, path: str, **fields) -> Webhook:  # type: ignore[no-untyped-def]
    webhook = Webhook(alias=unique("hook"), url=receiver.url(path), event_types=["WEBHOOK.TEST", "JOB.COMPLETED"])
    webhook.headers["Authorization"] = f"Bearer {RECEIVER_TOKEN}"
    for name, field_value in fields.items():
        setattr(webhook, name, field_value)
    return client.webhooks.CreateWebhook(CreateWebhookRequest(webhook=webhook, secret=SECRET)).webhook


def test_sign_in_watch_a_delivery_arrive_live_and_redeliver_it(
    page: Page, console: Console, admin_key: str, client: Client, receiver, tmp_path: Path
) -> None:
    path = "/" + unique("live")
    hook = make_hook(client, receiver, path)
    sign_in(page, console, admin_key)
    expect(page).to_have_url(console.url + "/webhooks")
    expect(page.locator("table.webhooks")).to_contain_text(hook.alias)
    shot(page, tmp_path, "webhooks")

    page.click(f"text={hook.alias}")
    expect(page.locator("h1")).to_have_text(f"Webhook {hook.alias}")
    expect(page.locator("#no-deliveries")).to_be_visible()
    # Sent after the page was shown: it appears without a reload, and moves on to SUCCEEDED.
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id, message="look"))
    row = page.locator(f"#row-{sent.delivery.id}")
    expect(row.locator(".state")).to_have_text("SUCCEEDED")
    expect(page.locator("#no-deliveries")).to_be_hidden()
    shot(page, tmp_path, "webhook")

    row.locator("a").first.click()
    expect(page.locator("h1")).to_have_text(f"Delivery {sent.delivery.id}")
    expect(page.locator("#body-pretty")).to_contain_text('"message": "look"')
    expect(page.locator("#attempt-1")).to_contain_text("200")
    first = receiver.wait_for(path, 1)[0]
    assert page.locator("#body-raw").text_content() == first.body.decode()
    shot(page, tmp_path, "delivery")

    page.click("#redeliver")
    expect(page.locator(".flash.ok")).to_contain_text("Redelivery queued")
    second = receiver.wait_for(path, 2)[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"] == sent.event.id
    # The page shows the new attempt as it happens.
    expect(page.locator("#attempt-2")).to_contain_text("200")
    shot(page, tmp_path, "redelivered")


def test_job_pages_show_input_output_and_deliveries(
    page: Page, console: Console, admin_key: str, client: Client, receiver, tmp_path: Path
) -> None:
    hook = make_hook(client, receiver, "/" + unique("job"))
    flow = make_flow(client, [{"transform": "{doubled: n}"}], webhook_ids=[hook.id])
    job = client.jobs.StartJob(StartJobRequest(flow=flow.id, input=value({"n": 21})))
    wait_job(client, job.id)
    sign_in(page, console, admin_key)
    page.goto(console.url + "/jobs")
    expect(page.locator("table.jobs tbody tr").first).to_contain_text(job.id)  # newest first
    shot(page, tmp_path, "jobs")
    page.click(f"text={job.id}")
    expect(page.locator("#job-state")).to_have_text("COMPLETED")
    expect(page.locator("#job-summary")).to_contain_text('"doubled": 21')
    expect(page.locator("table.deliveries")).to_contain_text(hook.alias)
    shot(page, tmp_path, "job")
    page.goto(console.url + "/events")
    expect(page.locator("h2#JOB\\.COMPLETED")).to_be_visible()
    shot(page, tmp_path, "events")


def test_a_solver_key_and_a_wrong_key_cannot_sign_in(page: Page, console: Console, tmp_path: Path) -> None:
    solver = spaces.create_key(spaces.space_id_by_name(spaces.DEFAULT_SPACE), "solver").token
    sign_in(page, console, solver)
    expect(page.locator(".flash.error")).to_contain_text("needs a management key")
    shot(page, tmp_path, "signin-solver")
    for wrong in (solver[:-2] + "xx", "hl_nope_nope", "not a key at all", "ключ"):
        sign_in(page, console, wrong)
        expect(page.locator(".flash.error")).to_be_visible()
        expect(page).to_have_url(console.url + "/signin")
    page.goto(console.url + "/webhooks")
    expect(page).to_have_url(console.url + "/signin")


def test_no_page_shows_a_secret_or_a_key(
    page: Page, context: BrowserContext, console: Console, admin_key: str, client: Client, receiver
) -> None:
    path = "/" + unique("secret")
    hook = make_hook(client, receiver, path)
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
    receiver.wait_for(path, 1)
    sign_in(page, console, admin_key)
    urls = ["/webhooks", f"/webhooks/{hook.id}", f"/deliveries/{sent.delivery.id}", "/jobs", "/events"]
    for url in urls:
        page.goto(console.url + url)
        page.wait_for_load_state("networkidle")
        html = page.content()
        for secret in (SECRET, SECRET.removeprefix("whsec_"), admin_key, admin_key.rsplit("_", 1)[1], RECEIVER_TOKEN):
            assert secret not in html, f"{url} shows a secret"
    [cookie] = [c for c in context.cookies() if c["name"] == "hookline_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert time.time() < cookie["expires"] <= time.time() + 8 * 3600 + 60
    assert admin_key not in cookie["value"]


def test_every_post_needs_its_csrf_token(
    page: Page, context: BrowserContext, console: Console, admin_key: str, client: Client, receiver
) -> None:
    hook = make_hook(client, receiver, "/" + unique("csrf"))
    sign_in(page, console, admin_key)
    page.goto(f"{console.url}/webhooks/{hook.id}")
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    assert token
    for form in ({}, {"csrf": "forged"}, {"csrf": token + "x"}):
        answer = context.request.post(f"{console.url}/webhooks/{hook.id}/enabled", form={**form, "enabled": "off"})
        assert answer.status == 403 and "CSRF" in answer.text()
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=hook.id)).enabled
    answer = context.request.post(f"{console.url}/webhooks/{hook.id}/enabled", form={"csrf": token, "enabled": "off"})
    assert answer.ok and "Webhook disabled" in answer.text()
    assert not client.webhooks.GetWebhook(GetWebhookRequest(id=hook.id)).enabled
    # The sign-in form carries one too (against signing a victim into an attacker's space).
    fresh = context.browser.new_context()  # type: ignore[union-attr]
    try:
        answer = fresh.request.post(console.url + "/signin", form={"api_key": admin_key})
        assert answer.status == 403 and "hookline_session" not in [c["name"] for c in fresh.cookies()]
    finally:
        fresh.close()


def test_actions_show_the_rpcs_refusal(
    page: Page, console: Console, admin_key: str, client: Client, receiver, tmp_path: Path
) -> None:
    hook = make_hook(client, receiver, "/" + unique("refused"))
    sign_in(page, console, admin_key)
    page.goto(f"{console.url}/webhooks/{hook.id}")
    page.fill("input[name=since]", "yesterday-ish")
    page.click("button:text-is('Recover')")
    expect(page.locator(".flash.error")).to_contain_text("not a time")
    page.click("button:text-is('Disable')")
    expect(page.locator(".flash.ok")).to_contain_text("Webhook disabled")
    page.click("button:text-is('Send a test event')")
    expect(page.locator(".flash.error")).to_contain_text("Refused:")
    shot(page, tmp_path, "refused")
    page.click("button:text-is('Enable')")
    page.fill("input[name=since]", "1h")
    page.click("button:text-is('Recover')")
    expect(page.locator(".flash.ok")).to_contain_text("Re-queued 0 failed deliveries")


def test_pages_need_a_session_and_send_security_headers(page: Page, console: Console) -> None:
    for url in ("/", "/webhooks", "/jobs", "/events", "/deliveries/dlv_x", "/live/deliveries?webhook=x"):
        page.goto(console.url + url)
        expect(page).to_have_url(console.url + "/signin")
    answer = page.goto(console.url + "/signin")
    assert answer is not None
    headers = answer.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


def test_hostile_parameters_get_error_pages_never_a_traceback(
    context: BrowserContext, page: Page, console: Console, admin_key: str, client: Client, receiver, other_space
) -> None:
    hook = make_hook(client, receiver, "/" + unique("hostile"))
    theirs = make_hook(other_space.client, receiver, "/" + unique("theirs"))
    their_delivery = other_space.client.webhooks.SendTestEvent(SendTestEventRequest(id=theirs.id)).delivery
    sign_in(page, console, admin_key)
    huge = "A" * 6000
    cases = {
        f"/webhooks/{theirs.id}": 404,
        f"/webhooks/{theirs.alias}": 404,
        f"/deliveries/{their_delivery.id}": 404,
        "/webhooks/wh_00000000000000000000000000": 404,
        "/deliveries/not-an-id": 404,
        "/jobs/job_nope": 404,
        "/webhooks/" + quote("\0"): 400,
        "/webhooks/" + quote("<script>alert(1)</script>"): 404,
        f"/webhooks?page_token={huge}": 400,
        f"/webhooks/{hook.id}?page_token={huge}": 400,
        f"/webhooks/{hook.id}?state=bogus": 400,
        f"/webhooks/{hook.id}?event_type={quote(chr(0))}": 400,
        "/jobs?state=" + quote("'; DROP TABLE job"): 400,
        "/jobs?page_token=%FF%FE": 400,
        f"/live/deliveries?webhook={theirs.id}": 404,
        f"/live/deliveries?webhook={hook.id}&cursor=garbage": 400,
        f"/live/deliveries?webhook={hook.id}&job=job_x": 400,
        "/live/deliveries?webhook=x&state=nope": 400,
        "/nothing-here": 404,
    }
    for url, status in cases.items():
        answer = context.request.get(console.url + url)
        body = answer.text()
        assert answer.status == status, f"{url[:80]}: {answer.status} {body[:300]}"
        assert "Traceback" not in body and "<script>alert" not in body
        assert 'role="alert"' in body, f"{url[:80]} has no error page"
    # Another space's webhook cannot be acted on either: the RPC's NOT_FOUND is shown.
    page.goto(f"{console.url}/webhooks/{hook.id}")
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    assert token
    for action in (f"/webhooks/{theirs.id}/test", f"/deliveries/{their_delivery.id}/retry"):
        answer = context.request.post(console.url + action, form={"csrf": token})
        assert "Refused:" in answer.text() and "not found" in answer.text()
    answer = context.request.post(console.url + "/signin", form={"csrf": "x" * 100_000})
    assert answer.status in (403, 413) and "Traceback" not in answer.text()


def test_live_updates_resume_after_a_reconnect_from_the_last_event_id(
    context: BrowserContext, page: Page, console: Console, admin_key: str, client: Client, receiver
) -> None:
    hook = make_hook(client, receiver, "/" + unique("resume"))
    sign_in(page, console, admin_key)
    [session] = [c["value"] for c in context.cookies() if c["name"] == "hookline_session"]
    first = _events(console, f"/live/deliveries?webhook={hook.id}", session, {}, lambda events: True)
    # While no one listens, a delivery is made and sent.
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
    receiver.wait_for(hook.url.removeprefix(receiver.base_url), 1)
    resumed = _events(
        console,
        f"/live/deliveries?webhook={hook.id}&prepend=1",
        session,
        {"Last-Event-ID": first[0]["id"]},
        lambda events: "SUCCEEDED" in events[-1].get("data", ""),
    )
    updates = [json.loads(e["data"]) for e in resumed if e["event"] == "update"]
    # Every change since the last id, from the delivery's first: QUEUED puts its row first on the page.
    assert [part["id"] for parts in updates for part in parts] == [f"row-{sent.delivery.id}"] * len(updates)
    assert updates[0][0]["into"] == "deliveries" and "PENDING" in updates[0][0]["html"]


def _events(
    console: Console, url: str, session: str, headers: dict[str, str], done: Callable[[list[dict[str, str]]], bool]
) -> list[dict[str, str]]:
    """The server-sent events of `url` until `done(events)` holds (at most 50)."""
    host, port = console.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", url, headers={"Cookie": f"hookline_session={session}", **headers})
        response = connection.getresponse()
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        events: list[dict[str, str]] = []
        current: dict[str, str] = {}
        while len(events) < 50:
            line = response.readline().decode().rstrip("\n")
            if line:
                name, _, field_value = line.partition(": ")
                current[name] = field_value
                continue
            if current:
                events.append(current)
                current = {}
                if done(events):
                    return events
        raise AssertionError(f"no end in sight: {events}")
    finally:
        connection.close()
