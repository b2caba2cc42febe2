"""Webhooks: /webhook/ subscriptions over HTTP, and deliveries POSTed to a real receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from close_api_emulator import OTHER_ORG_API_KEY, EmulatorConfig, signature

from .spec import validate_response

SMS_CREATED = [{"object_type": "activity.sms", "action": "created"}]
SMS_UPDATED = [{"object_type": "activity.sms", "action": "updated"}]
# Small retry settings, so back-off, drops and pauses happen within a few clock jumps.
FAST_RETRIES = {"webhook_backoff_base_seconds": 10.0, "webhook_backoff_cap_seconds": 10.0}


@dataclass
class Received:
    """One POST the receiver took."""

    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.payload["event"]["id"]

    def verifies(self, key: str) -> bool:
        """Whether close-sig-hash is the HMAC a receiver computes with `key`."""
        mac = hmac.new(
            bytes.fromhex(key),
            self.headers["close-sig-timestamp"].encode() + self.body,
            hashlib.sha256,
        )
        return hmac.compare_digest(mac.hexdigest(), self.headers["close-sig-hash"])


class Receiver:
    """A real HTTP receiver on 127.0.0.1 answering every POST with `status`."""

    def __init__(self, port: int = 0) -> None:
        self.status = 200
        self.received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.received.append(Received(headers, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    live = Receiver()
    yield live
    live.close()


def wait_until(check: Callable[[], Any], timeout: float = 2.0) -> Any:
    """`check()`'s first truthy value, polled until `timeout`; fails the test otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"not true within {timeout}s: {check}")


def subscribe(run: Any, url: str, events: list[dict[str, str]] = SMS_CREATED, **more: Any) -> Any:
    """POST /webhook/ as the admin key; the response."""
    body = {"url": url, "events": events, **more}
    return requests.post(run.base_url + "/webhook/", json=body, auth=(run.api_key, ""), timeout=10)


def call(run: Any, method: str, path: str, api_key: str | None = None, **kw: Any) -> Any:
    return requests.request(
        method, run.base_url + path, auth=(api_key or run.api_key, ""), timeout=10, **kw
    )


def new_sms(run: Any, text: str = "hello") -> str:
    return run.emu.create_sms({"status": "inbox", "text": text})["id"]


def created_event(run: Any, sms_id: str) -> dict[str, Any]:
    (event,) = [
        e for e in run.emu.events() if e["object_id"] == sms_id and e["action"] == "created"
    ]
    return event


# ---- subscriptions -------------------------------------------------------------------------


def test_the_key_is_shown_once_and_crud_works(emulator, receiver):
    run = emulator(sms=0)
    resp = subscribe(run, receiver.url, verify_ssl=False)
    assert resp.status_code == 201, resp.text
    validate_response(resp)
    sub = resp.json()
    assert sub["id"].startswith("whsub_") and sub["status"] == "active"
    assert len(bytes.fromhex(sub["signature_key"])) == 32
    assert sub["url"] == receiver.url and sub["verify_ssl"] is False
    assert sub["events"] == [{**SMS_CREATED[0], "extra_filter": None}]
    listed = call(run, "GET", "/webhook/")
    validate_response(listed)
    assert listed.json()["has_more"] is False
    assert [s["id"] for s in listed.json()["data"]] == [sub["id"]]
    one = call(run, "GET", f"/webhook/{sub['id']}/")
    validate_response(one)
    shown = {key: value for key, value in sub.items() if key != "signature_key"}
    assert one.json() == shown
    assert "signature_key" not in listed.text + one.text
    changed = call(run, "PUT", f"/webhook/{sub['id']}/", json={"events": SMS_UPDATED})
    validate_response(changed)
    assert changed.json()["events"][0]["action"] == "updated"
    assert "signature_key" not in changed.json()
    assert call(run, "GET", f"/webhook/{sub['id']}/", api_key=OTHER_ORG_API_KEY).status_code == 404
    assert call(run, "GET", "/webhook/", api_key=OTHER_ORG_API_KEY).json()["data"] == []
    gone = call(run, "DELETE", f"/webhook/{sub['id']}/")
    validate_response(gone)
    assert gone.json() == {}
    missing = call(run, "GET", f"/webhook/{sub['id']}/")
    assert missing.status_code == 404 and "error" in missing.json()
    assert call(run, "GET", "/webhook/").json()["data"] == []


def test_bad_bodies_are_refused_as_close_refuses_them(emulator):
    run = emulator(sms=0)
    no_url = call(run, "POST", "/webhook/", json={"events": SMS_CREATED})
    assert no_url.status_code == 400 and no_url.json()["field-errors"] == {
        "url": "This field is required."
    }
    no_events = call(run, "POST", "/webhook/", json={"url": "http://127.0.0.1:9/x"})
    assert no_events.status_code == 400 and set(no_events.json()["field-errors"]) == {"events"}
    for body in (
        {"url": "ftp://x/", "events": SMS_CREATED},
        {"url": "http://127.0.0.1:9/x", "events": [{"object_type": "activity.sms"}]},
        {"url": "http://127.0.0.1:9/x", "events": SMS_CREATED, "verify_ssl": "yes"},
    ):
        resp = call(run, "POST", "/webhook/", json=body)
        assert resp.status_code == 400 and resp.json()["errors"] == [], body
    sub = subscribe(run, "http://127.0.0.1:9/x").json()
    bad_status = call(run, "PUT", f"/webhook/{sub['id']}/", json={"status": "asleep"})
    assert bad_status.status_code == 400 and "status" in bad_status.json()["field-errors"]
    assert requests.get(run.base_url + "/webhook/", timeout=10).status_code == 401


def test_the_41st_subscription_is_refused(emulator):
    run = emulator(sms=0)
    ids = [subscribe(run, f"http://127.0.0.1:9/{n}").json()["id"] for n in range(40)]
    assert len(set(ids)) == 40
    refused = subscribe(run, "http://127.0.0.1:9/41")
    assert refused.status_code == 400
    assert refused.json() == {
        "errors": ["An organization can have at most 40 webhook subscriptions."],
        "field-errors": {},
    }
    assert len(call(run, "GET", "/webhook/").json()["data"]) == 40
    other = call(
        run,
        "POST",
        "/webhook/",
        api_key=OTHER_ORG_API_KEY,
        json={"url": "http://127.0.0.1:9/o", "events": SMS_CREATED},
    )
    assert other.status_code == 201  # the limit is an organization's
    call(run, "DELETE", f"/webhook/{ids[0]}/")
    assert subscribe(run, "http://127.0.0.1:9/again").status_code == 201


def test_webhook_requests_are_rate_limited(emulator):
    run = emulator(sms=0, rps=1, burst=2)
    codes = [call(run, "GET", "/webhook/").status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and 429 in codes[2:]


def test_settings_are_validated():
    for bad in (
        {"webhook_duplicate_rate": 1.5},
        {"webhook_backoff_base_seconds": 0},
        {"webhook_backoff_cap_seconds": 5, "webhook_backoff_base_seconds": 10},
        {"webhook_backlog_limit": 0},
        {"webhook_reorder_seconds": -1},
        {"webhook_subscription_limit": True},
    ):
        with pytest.raises(ValueError):
            EmulatorConfig(**bad)
    defaults = EmulatorConfig()
    assert defaults.webhook_backoff_cap_seconds == 1200
    assert defaults.webhook_retry_window_seconds == 72 * 3600
    assert defaults.webhook_pause_after_failing_seconds == 3 * 86400
    assert defaults.webhook_backlog_limit == 100_000 and not defaults.webhook_forged_signature


# ---- deliveries ----------------------------------------------------------------------------


def test_a_created_sms_is_delivered_signed(emulator, receiver):
    run = emulator(sms=0)
    sub = subscribe(run, receiver.url).json()
    posted = call(run, "POST", "/activity/sms/", json={"status": "inbox", "text": "hi"})
    sms_id = posted.json()["id"]
    (got,) = wait_until(lambda: receiver.received)
    assert got.payload["subscription_id"] == sub["id"]
    event = created_event(run, sms_id)
    assert got.payload["event"] == call(run, "GET", f"/event/{event['id']}/").json()
    assert got.payload["event"]["data"]["id"] == sms_id
    assert got.verifies(sub["signature_key"])
    assert got.headers["content-type"] == "application/json"
    assert abs(int(got.headers["close-sig-timestamp"]) - run.emu.clock.time()) < 5
    (record,) = wait_until(lambda: run.emu.webhook_deliveries)
    assert (record.subscription_id, record.event_id, record.attempt) == (sub["id"], event["id"], 1)
    assert record.status == 200 and record.ok and record.outcome == "delivered"
    time.sleep(0.1)
    assert len(receiver.received) == 1  # once, and only the subscribed action


def test_an_updated_event_waits_for_the_consolidation_delay(emulator, receiver):
    run = emulator(sms=0, consolidation_seconds=60)
    sub = subscribe(run, receiver.url, events=SMS_UPDATED).json()
    sms_id = run.emu.create_sms({"status": "draft", "text": "first"})["id"]
    run.emu.clock.advance(120)  # past the created event's window: the update is its own event
    run.emu.update_sms(sms_id, {"text": "second"})
    run.emu.clock.advance(30)
    run.emu.update_sms(sms_id, {"text": "third"})  # folds into the same updated event
    time.sleep(0.3)
    assert receiver.received == [] and run.emu.webhook_deliveries == []
    run.emu.clock.advance(31)
    (got,) = wait_until(lambda: receiver.received)
    assert got.payload["event"]["action"] == "updated"
    assert got.payload["event"]["data"]["text"] == "third"
    assert got.verifies(sub["signature_key"])
    time.sleep(0.1)
    assert len(receiver.received) == 1


def test_a_failing_receiver_gets_retries_with_back_off_until_it_answers(emulator, receiver):
    run = emulator(sms=0, webhook_backoff_base_seconds=10.0, webhook_backoff_cap_seconds=40.0)
    # Only the test moves the clock: on a loaded machine, real time between an attempt and the
    # advance that brings the next due made a 10 s gap 11.
    run.emu.clock.freeze()
    receiver.status = 500
    sub = subscribe(run, receiver.url).json()
    new_sms(run)
    # Each wait is for the attempt's record: it is written once the answer is in.
    wait_until(lambda: len(run.emu.webhook_deliveries) == 1)
    time.sleep(0.2)
    assert len(receiver.received) == 1  # the retry waits for its back-off
    for step, attempts in ((10, 2), (20, 3), (40, 4), (40, 5)):
        run.emu.clock.advance(step - 1)
        time.sleep(0.1)
        assert len(receiver.received) == attempts - 1, step
        run.emu.clock.advance(1)
        wait_until(lambda n=attempts: len(run.emu.webhook_deliveries) == n)
    receiver.status = 200
    run.emu.clock.advance(40)
    wait_until(lambda: run.emu.webhook_deliveries[-1].ok)
    records = run.emu.webhook_deliveries
    assert [r.attempt for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r.outcome for r in records] == ["retry"] * 5 + ["delivered"]
    assert [r.status for r in records] == [500] * 5 + [200]
    gaps = [round(b.time - a.time) for a, b in zip(records, records[1:], strict=False)]
    assert gaps == [10, 20, 40, 40, 40]  # doubling, capped
    assert len({r.event_id for r in records}) == 1
    assert receiver.received[-1].verifies(sub["signature_key"])
    assert receiver.received[0].body == receiver.received[-1].body


def test_a_closed_port_is_retried_until_the_receiver_is_up(emulator):
    down = Receiver()
    port = down.port
    down.close()  # connection refused from now on
    run = emulator(sms=0, **FAST_RETRIES)
    sub = subscribe(run, f"http://127.0.0.1:{port}/hook").json()
    new_sms(run)
    first = wait_until(lambda: run.emu.webhook_deliveries)[0]
    assert first.status is None and first.error and first.outcome == "retry"
    up = Receiver(port)
    try:
        run.emu.clock.advance(10)
        (got,) = wait_until(lambda: up.received)
        assert got.verifies(sub["signature_key"])
        wait_until(lambda: run.emu.webhook_deliveries[-1].ok)
        assert run.emu.webhook_deliveries[-1].attempt == 2
    finally:
        up.close()


def test_a_delivery_is_dropped_after_the_retry_window(emulator, receiver):
    run = emulator(sms=0, webhook_retry_window_seconds=25.0, **FAST_RETRIES)
    receiver.status = 503
    subscribe(run, receiver.url)
    new_sms(run)
    for attempts in (1, 2, 3):
        wait_until(lambda n=attempts: len(run.emu.webhook_deliveries) == n)
        run.emu.clock.advance(10)
    receiver.status = 200
    run.emu.clock.advance(100)
    time.sleep(0.2)
    assert [r.outcome for r in run.emu.webhook_deliveries] == ["retry", "retry", "dropped"]
    assert len(receiver.received) == 3 and all(r.status == 503 for r in run.emu.webhook_deliveries)


def test_a_subscription_pauses_after_failing_and_resumes_when_reactivated(emulator, receiver):
    run = emulator(sms=0, webhook_pause_after_failing_seconds=25.0, **FAST_RETRIES)
    receiver.status = 500
    sub = subscribe(run, receiver.url).json()
    path = f"/webhook/{sub['id']}/"
    new_sms(run)
    for attempts in (1, 2, 3, 4):
        wait_until(lambda n=attempts: len(run.emu.webhook_deliveries) == n)
        run.emu.clock.advance(10)
    assert run.emu.webhook_deliveries[-1].outcome == "paused"
    assert call(run, "GET", path).json()["status"] == "paused"
    receiver.status = 200
    missed = new_sms(run, "while paused")
    run.emu.clock.advance(100)
    time.sleep(0.2)
    assert len(receiver.received) == 4  # nothing while paused
    resumed = call(run, "PUT", path, json={"status": "active"})
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    after = new_sms(run, "after")
    (got,) = wait_until(lambda: receiver.received[4:])
    assert got.payload["event"]["object_id"] == after
    time.sleep(0.1)
    seen = {r.payload["event"]["object_id"] for r in receiver.received}
    assert missed not in seen  # Close replays nothing


def test_a_full_backlog_pauses_the_subscription(emulator, receiver):
    run = emulator(sms=0, webhook_backlog_limit=3, webhook_backoff_base_seconds=600.0)
    receiver.status = 500
    sub = subscribe(run, receiver.url).json()
    new_sms(run, "one")
    new_sms(run, "two")
    wait_until(lambda: len(run.emu.webhook_deliveries) == 2)  # both failed, both waiting
    assert call(run, "GET", f"/webhook/{sub['id']}/").json()["status"] == "active"
    new_sms(run, "three")
    assert call(run, "GET", f"/webhook/{sub['id']}/").json()["status"] == "paused"
    run.emu.clock.advance(3600)  # the retries would be due now
    time.sleep(0.2)
    assert len(receiver.received) == 2 and run.emu.webhooks.pending == []


def test_a_forged_signature_does_not_verify(emulator, receiver):
    run = emulator(sms=0, webhook_forged_signature=True)
    sub = subscribe(run, receiver.url).json()
    new_sms(run)
    (got,) = wait_until(lambda: receiver.received)
    assert len(got.headers["close-sig-hash"]) == 64
    assert not got.verifies(sub["signature_key"])
    honest = signature(sub["signature_key"], got.headers["close-sig-timestamp"], got.body)
    assert got.headers["close-sig-hash"] != honest


def test_duplicates_deliver_the_same_event_twice(emulator, receiver):
    run = emulator(sms=0, webhook_duplicate_rate=1.0)
    sub = subscribe(run, receiver.url).json()
    new_sms(run)
    first, second = wait_until(
        lambda: receiver.received[:2] if len(receiver.received) >= 2 else None
    )
    assert first.event_id == second.event_id and first.body == second.body
    assert second.verifies(sub["signature_key"])
    records = wait_until(
        lambda: run.emu.webhook_deliveries[:2] if len(run.emu.webhook_deliveries) >= 2 else None
    )
    assert [r.duplicate for r in records] == [False, True]
    time.sleep(0.1)
    assert len(receiver.received) == 2  # a duplicate is not duplicated again


def test_deliveries_come_out_of_order_when_reordering_is_on(emulator, receiver):
    run = emulator(sms=0, webhook_reorder_seconds=0.5)
    subscribe(run, receiver.url)
    sms_ids = [new_sms(run, f"n{k}") for k in range(8)]
    wait_until(lambda: len(receiver.received) == 8, timeout=3)
    order = [r.payload["event"]["object_id"] for r in receiver.received]
    assert sorted(order) == sorted(sms_ids) and order != sms_ids


def test_deliveries_keep_the_log_order_by_default(emulator, receiver):
    run = emulator(sms=0)
    subscribe(run, receiver.url)
    sms_ids = [new_sms(run, f"n{k}") for k in range(8)]
    wait_until(lambda: len(receiver.received) == 8)
    assert [r.payload["event"]["object_id"] for r in receiver.received] == sms_ids
