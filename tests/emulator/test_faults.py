"""Faults on demand and the test-controlled clock, seen through real HTTP."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest
import requests

from close_api_emulator import Emulator, EmulatorServer


@pytest.mark.parametrize("code", [502, 503, 504])
def test_5xx_with_empty_body(emulator, code):
    run = emulator(sms=5)
    run.emu.faults.add(str(code), times=2)
    assert [run.get("/activity/sms/").status_code for _ in range(3)] == [code, code, 200]
    assert run.emu.stats.faults[str(code)] == 2
    assert [r.status for r in run.emu.request_log] == [code, code, 200]


def test_fault_path_prefix(emulator):
    run = emulator(sms=5)
    run.emu.faults.add("503", path_prefix="/event/")
    assert run.get("/activity/sms/").status_code == 200
    assert run.get("/event/").status_code == 503
    assert run.get("/event/").status_code == 200


def test_fault_429_carries_headers(emulator):
    run = emulator(sms=5)
    run.emu.faults.add("429", reset=2.5)
    resp = run.get("/activity/sms/")
    assert resp.status_code == 429 and resp.headers["retry-after"] == "3"
    assert "remaining=0" in resp.headers["ratelimit"] and resp.json()["rate_reset"] == "2.500000"


def test_slow_and_latency(emulator):
    # Checked through client read timeouts, the way a sync experiences them.
    run = emulator(sms=5, latency_ms=300)
    run.emu.faults.add("slow", seconds=3)
    with pytest.raises(requests.exceptions.ReadTimeout):
        run.get("/me/", timeout=1.5)  # the slow response
    with pytest.raises(requests.exceptions.ReadTimeout):
        run.get("/me/", timeout=0.05)  # latency applies to every response
    assert run.get("/me/", timeout=10).status_code == 200  # the fault was used up


def test_hang_times_out_client_and_server_stops_promptly():
    emu = Emulator()
    server = EmulatorServer(emu).start()
    emu.faults.add("hang")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(server.base_url + "/me/", timeout=0.5)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(timeout=30)
    assert not stopper.is_alive()  # a hanging request does not keep the server up


@pytest.mark.parametrize("kind", ["drop", "truncate", "malformed"])
def test_broken_bodies(emulator, kind):
    run = emulator(sms=200)
    run.emu.faults.add(kind)
    with pytest.raises((requests.exceptions.RequestException, ValueError)):
        run.get("/activity/sms/").json()
    assert run.get("/activity/sms/").json()["data"]


def test_html_200(emulator):
    run = emulator(sms=5)
    run.emu.faults.add("html200")
    resp = run.get("/activity/sms/")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        resp.json()


def test_faults_clear_and_unknown_kind(emulator):
    run = emulator(sms=5)
    run.emu.faults.add("503", times=5)
    run.emu.faults.clear()
    assert run.get("/me/").status_code == 200
    with pytest.raises(ValueError):
        run.emu.faults.add("418")


def test_date_header_follows_the_emulator_clock(emulator):
    run = emulator(sms=5)
    target = datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    run.emu.clock.set(target)
    served = parsedate_to_datetime(run.get("/me/").headers["Date"])
    assert abs(served - target) < timedelta(seconds=5)
    run.emu.clock.advance(86400 * 40)
    served = parsedate_to_datetime(run.get("/event/").headers["Date"])
    assert abs(served - (target + timedelta(days=40))) < timedelta(seconds=5)
    assert abs(run.emu.clock.now() - (target + timedelta(days=40))) < timedelta(seconds=5)


def test_frozen_clock(emulator):
    run = emulator(sms=0)
    run.emu.clock.freeze(datetime(2030, 1, 1, tzinfo=timezone.utc))
    sms = run.emu.create_sms({"status": "inbox", "text": "x"})
    assert sms["date_created"] == "2030-01-01T00:00:00+00:00"
    run.emu.clock.advance(1.5)
    assert run.emu.clock.now() == datetime(2030, 1, 1, 0, 0, 1, 500000, tzinfo=timezone.utc)
