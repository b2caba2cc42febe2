"""The client against the emulator's recorded answers: rate-limit forms and groups by method,
the POST override refused, warnings."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from close_sms.source import settings
from close_sms.source.api.client import CloseClient
from close_sms.source.sms.feed import fetch_by_ids
from tests.support import mismatches, run_cli, sync

CLIENT_LOG = "close_sms.source.api.client"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == CLIENT_LOG and r.levelno >= logging.WARNING
    ]


def test_answers_without_rate_limit_headers_are_said_once(emulator, caplog):
    running = emulator(sms=20, rps=50, ratelimit_window=1, ratelimit_header_form="none")
    client = CloseClient(running.base_url, running.api_key)
    with caplog.at_level(logging.WARNING, logger=CLIENT_LOG):
        for _ in range(5):
            client.get(settings.SMS_ENDPOINT, {"_limit": 1})
    assert _warnings(caplog) == [
        "Close's answers carry no rate-limit header: pacing from 429 answers alone"
    ]


@pytest.mark.parametrize("form", ["ratelimit", "x-rate-limit", "ratelimit-separate", "ietf"])
def test_answers_with_any_rate_limit_header_form_warn_nothing(emulator, caplog, form):
    running = emulator(sms=20, rps=50, ratelimit_window=1, ratelimit_header_form=form)
    client = CloseClient(running.base_url, running.api_key)
    with caplog.at_level(logging.WARNING, logger=CLIENT_LOG):
        client.get(settings.SMS_ENDPOINT, {"_limit": 1})
    assert _warnings(caplog) == []


def test_a_fourth_key_is_said_to_add_nothing_once(caplog):
    with caplog.at_level(logging.WARNING, logger=CLIENT_LOG):
        CloseClient("http://127.0.0.1:9", ["k1", "k2", "k3"])
        assert _warnings(caplog) == []
        CloseClient("http://127.0.0.1:9", ["k1", "k2", "k3", "k4"])
    assert _warnings(caplog) == [
        "4 API keys: Close's organization limit is 3 times a key's, so a fourth key adds no "
        "requests a second"
    ]


def test_override_lookups_are_paced_in_their_own_tenfold_lower_group(emulator):
    """Lookups too long for a URL go as POST overrides, a group with a tenth of GET's limit:
    they get no 429, and list reads meanwhile keep their own, tenfold budget (the pacer's
    share of the budget under every limit is proven in virtual time, tests/source/test_pacer.py)."""
    running = emulator(
        sms=200,
        rps=20,
        ratelimit_window=1,
        ratelimit_group_by_method=True,
        ratelimit_override_share=0.1,
    )
    emu = running.emu
    ids = sorted(emu.snapshot())
    client = CloseClient(running.base_url, running.api_key)
    # 100 ids make a query string longer than a URL may be.
    batches = [(ids[i:] + ids[:i])[:100] for i in range(10)]
    done = threading.Event()

    def list_pages() -> None:
        # Reads of the list meanwhile: their budget must not pace the override's group.
        while not done.is_set():
            client.get(settings.SMS_ENDPOINT, {"_limit": 1})

    reader = threading.Thread(target=list_pages)
    started = time.monotonic()
    reader.start()
    try:
        for batch in batches:
            found = next(fetch_by_ids(client, batch, set(), batch_size=len(batch))).found
            assert len(found) == len(batch)
    finally:
        done.set()
        reader.join()
    elapsed = time.monotonic() - started
    overrides = [r for r in emu.request_log if r.method == "POST"]
    assert len(overrides) >= len(batches)
    throttled = [r for r in overrides if r.status == 429]
    assert len(throttled) <= 0.01 * len(overrides), f"{len(throttled)} of {len(overrides)}"
    reads = [r for r in emu.request_log if r.method == "GET" and r.status == 200]
    # Paced with the override's group they would get a tenth of that.
    assert len(reads) >= 0.5 * 20 * elapsed, f"{len(reads)} list reads in {elapsed:.1f} s"


@pytest.mark.parametrize("refusal", [400, 405])
def test_a_refused_post_override_falls_back_to_get_batches_for_the_rest_of_the_run(
    emulator, tmp_path, refusal
):
    """The change feed names 150 new SMS: 100 ids are too long for a URL, and Close refuses the
    POST override. The ids go as GETs short enough for a URL; no second override is sent."""
    running = emulator(sms=300, seed=12, refuse_method_override=refusal)
    emu = running.emu
    database = tmp_path / "warehouse.duckdb"
    sync(running, database, recent_window_hours=0)
    some = next(iter(emu.snapshot().values()))
    base = {key: some[key] for key in ("lead_id", "contact_id", "remote_phone", "local_phone")}
    for number in range(150):
        emu.create_sms({**base, "status": "inbox", "direction": "inbound", "text": f"{number}"})
    emu.clock.advance(settings.EVENT_LOOKBACK_SECONDS + 60)
    emu.clear_request_log()

    sync(running, database, recent_window_hours=0)

    assert mismatches(database, emu.snapshot()) == []
    overrides = [r for r in emu.request_log if r.method == "POST"]
    assert [r.status for r in overrides] == [refusal]
    lookups = [r for r in emu.request_log if r.method == "GET" and "id__in" in r.params]
    assert sum(len(r.params["id__in"].split(",")) for r in lookups) >= 150


def test_the_cli_says_each_pacing_warning_once_on_stderr_even_when_quiet(emulator, tmp_path):
    """dlt's log level is CRITICAL in the CLI: the warnings must not depend on a logger."""
    running = emulator(sms=300, rps=50, ratelimit_window=1, ratelimit_header_form="none")
    keys = [running.api_key] + [f"api_pacerWARNINGkey{n}ForTHEpoolQx81" for n in range(3)]
    for key in keys[1:]:
        running.emu.add_api_key(key)
    database = tmp_path / "warehouse.duckdb"

    try:
        result = run_cli(
            "sync",
            "--quiet",
            "--base-url",
            running.base_url,
            "--database",
            str(database),
            api_key=",".join(keys),
        )
    finally:
        for key in keys[1:]:
            running.emu.remove_api_key(key)

    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "close-sms: warning: 4 API keys: Close's organization limit is 3 times a key's, so a "
        "fourth key adds no requests a second",
        "close-sms: warning: Close's answers carry no rate-limit header: pacing from 429 "
        "answers alone",
    ]
    assert mismatches(database, running.emu.snapshot()) == []
