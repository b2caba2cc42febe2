"""Authentication, key hygiene and rate limits."""

from __future__ import annotations

import base64
import logging
import re

import requests

from close_api_emulator import DEMO_API_KEY, NON_ADMIN_API_KEY, EmulatorServer

UNAUTHORIZED = (
    "The server could not verify that you are authorized to access the URL requested.  You "
    "either supplied the wrong credentials (e.g. a bad password), or your browser doesn't "
    "understand how to supply the credentials required."
)


def test_basic_and_bearer(emulator):
    run = emulator(sms=5)
    url = run.base_url + "/activity/sms/"
    assert requests.get(url, auth=(DEMO_API_KEY, ""), timeout=10).status_code == 200
    bearer = requests.get(url, headers={"Authorization": f"Bearer {DEMO_API_KEY}"}, timeout=10)
    assert bearer.status_code == 200
    token = base64.b64encode(f"{NON_ADMIN_API_KEY}:".encode()).decode()
    assert requests.get(url, headers={"Authorization": f"Basic {token}"}, timeout=10).ok


def test_401_body(emulator):
    run = emulator(sms=5)
    for auth in (None, ("wrong", ""), ("", "")):
        resp = requests.get(run.base_url + "/activity/sms/", auth=auth, timeout=10)
        assert resp.status_code == 401 and resp.json() == {"error": UNAUTHORIZED}


def test_keys_never_leak(emulator, caplog):
    run = emulator(sms=50)
    loud = EmulatorServer(run.emu, quiet=False).start()
    try:
        caplog.set_level(logging.INFO, logger="werkzeug")
        session = requests.Session()
        session.auth = (DEMO_API_KEY, "")
        texts = []
        for path in ("/activity/sms/", "/event/", "/me/", "/activity/sms/acti_x/"):
            resp = session.get(loud.base_url + path, timeout=10)
            texts.append(resp.text + str(resp.headers))
        created = session.post(
            loud.base_url + "/activity/sms/", json={"status": "inbox", "text": "x"}, timeout=10
        )
        texts.append(created.text + str(created.headers))
    finally:
        loud.stop()
    logged = caplog.text
    assert "/activity/sms/" in logged  # the request log is on...
    for key in (
        DEMO_API_KEY,
        NON_ADMIN_API_KEY,
        base64.b64encode(f"{DEMO_API_KEY}:".encode()).decode(),
    ):
        assert key not in logged
        assert all(key not in text for text in texts)
    assert all(key not in repr(rec) for rec in run.emu.request_log for key in (DEMO_API_KEY,))


def test_ratelimit_headers_and_429(emulator):
    run = emulator(sms=5, rps=2, burst=3)
    session = run.session()
    url = run.base_url + "/activity/sms/"
    responses = [session.get(url, timeout=10) for _ in range(5)]
    statuses = [r.status_code for r in responses]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    header = re.compile(r"^limit=(\d+), remaining=(\d+), reset=(\d+(\.\d+)?)$")
    for resp in responses:
        assert header.match(resp.headers["ratelimit"]), resp.headers["ratelimit"]
    limited = next(r for r in responses if r.status_code == 429)
    body = limited.json()
    assert int(limited.headers["retry-after"]) >= 1
    assert float(body["rate_reset"]) > 0 and float(body["error"]["rate_reset"]) > 0
    assert header.match(limited.headers["ratelimit"]).group(2) == "0"
    assert run.emu.stats.by_status[429] >= 1
    # Another endpoint group and another key have their own buckets.
    assert session.get(run.base_url + "/event/", timeout=10).status_code == 200
    assert run.session(NON_ADMIN_API_KEY).get(url, timeout=10).status_code == 200


def test_ratelimit_semicolon_separator_and_off_by_default(emulator):
    run = emulator(sms=5, rps=50, ratelimit_separator=";")
    resp = run.get("/activity/sms/")
    assert re.match(r"^limit=50; remaining=\d+; reset=[\d.]+$", resp.headers["ratelimit"])
    # Off by default: answers describe a budget no client reaches, as Close's most answers do.
    plain = emulator(sms=5)
    unlimited = "limit=1000000, remaining=999999, reset=1.000"
    assert plain.get("/activity/sms/").headers["ratelimit"] == unlimited
    assert all(plain.get("/me/").status_code == 200 for _ in range(30))
    silent = emulator(sms=5, ratelimit_header_form="none")
    assert "ratelimit" not in silent.get("/activity/sms/").headers
