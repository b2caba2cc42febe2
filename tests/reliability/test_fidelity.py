"""Close is evidence, not proof: each guard of the sync against the emulator behaviour it guards.

Every test turns on one way Close departs from its documentation (or from what clients
observed) and shows the sync either stays exact or stops loudly, committing nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from close_sms.source import settings
from close_sms.source.api.pacing import RateLimitPacer, retry_wait_from_429
from tests.reliability.helpers import FAST_FAIL, fingerprint, one_line_error, status, sync_cli
from tests.support import change_account, count, mismatches, sync

# --- rate limits ---------------------------------------------------------------------------


def _response_429(headers: dict[str, str], body: bytes = b"{}") -> requests.Response:
    response = requests.Response()
    response.status_code = 429
    response.headers.update(headers)
    response._content = body
    return response


def test_a_429_waits_for_the_longest_of_reset_retry_after_and_rate_reset():
    assert retry_wait_from_429(_response_429({"ratelimit": "limit=20, remaining=0, reset=3"})) == 3
    both = _response_429({"ratelimit": "limit=20, remaining=0, reset=3", "retry-after": "7"})
    assert retry_wait_from_429(both) == 7
    legacy = _response_429(
        {"ratelimit": "limit=20, remaining=0, reset=3", "retry-after": "7"},
        b'{"error": {"rate_reset": 11.5}}',
    )
    assert retry_wait_from_429(legacy) == 11.5
    assert retry_wait_from_429(_response_429({"retry-after": "soon"})) == 2.0


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_after_a_window_ends_the_pacer_assumes_the_window_its_answers_gave_not_a_second():
    clock = _FakeClock()
    pacer = RateLimitPacer(clock=clock)
    pacer.reserve("sms")
    # A 10-second window with nothing left: the next slot is at its end.
    pacer.observe("sms", {"ratelimit": "limit=4, remaining=0, reset=10.000"})
    assert pacer.reserve("sms") == 10
    pacer.observe("sms", {})
    clock.now += 10
    # The new window is assumed 10 s long too: its 4 requests are spread over 10 s, not 1 s.
    waits = []
    for _ in range(3):
        waits.append(pacer.reserve("sms"))
        clock.now += waits[-1]
    assert waits[0] == 0
    assert all(wait >= 2 for wait in waits[1:]), waits


# --- deletes need proof, and a guard stops mass deletes ---------------------------------------


@pytest.mark.slow
def test_a_reconcile_removing_many_sms_without_deleted_events_stops_with_exit_7(emulator, tmp_path):
    running = emulator(sms=600, seed=41)
    emu = running.emu
    database = tmp_path / "w.duckdb"
    assert sync_cli(running, database).returncode == 0
    rows = count(database, "SELECT count(*) FROM close_sms.sms")
    gone = sorted(emu.snapshot())[:150]
    for sms_id in gone:
        emu.delete_sms(sms_id)
    # Past the event log's 30 days, the deletes are known only by their absence.
    emu.clock.advance(45 * 86400)

    refused = sync_cli(running, database)

    assert refused.returncode == 7, refused.stderr
    assert "without `deleted` events" in refused.stderr
    assert "--allow-mass-delete" in refused.stderr
    assert count(database, "SELECT count(*) FROM close_sms.sms") == rows

    # Every later run stops the same way: nothing is removed until someone decides.
    again = sync_cli(running, database)
    assert again.returncode == 7, again.stderr
    assert count(database, "SELECT count(*) FROM close_sms.sms") == rows

    allowed = sync_cli(running, database, "--allow-mass-delete")

    assert allowed.returncode == 0, allowed.stderr
    assert mismatches(database, emu.snapshot()) == []


def test_the_guard_counts_a_share_of_the_table_not_a_fixed_number(emulator, tmp_path):
    running = emulator(sms=600, seed=42)
    emu = running.emu
    database = tmp_path / "w.duckdb"
    sync(running, database)
    for sms_id in sorted(emu.snapshot())[:150]:
        emu.delete_sms(sms_id)
    emu.clock.advance(45 * 86400)

    report = sync(running, database, max_delete_share=0.3)

    assert report.removed == 150
    assert mismatches(database, emu.snapshot()) == []


# --- the whole date range -------------------------------------------------------------------


def _dated(emu, when: datetime, text: str, status: str = "inbox") -> str:
    some = next(iter(emu.snapshot().values()))
    fields = ("lead_id", "contact_id", "remote_phone", "local_phone")
    payload = {name: some[name] for name in fields}
    payload.update(status=status, text=text, date_created=when.isoformat())
    return emu.create_sms(payload)["id"]


def test_sms_dated_before_2013_and_in_the_future_are_loaded_refreshed_and_reconciled(
    emulator, target
):
    running = emulator(sms=300, seed=43)
    emu = running.emu
    now = emu.clock.now()
    imported = {
        "epoch": _dated(emu, datetime(1970, 1, 1, 0, 0, 5, tzinfo=timezone.utc), "first"),
        "2004": _dated(emu, datetime(2004, 6, 1, tzinfo=timezone.utc), "old import"),
        "future": _dated(emu, now + timedelta(days=200), "dated ahead"),
    }

    first = sync(running, target)

    assert first.mode == "backfill"
    assert mismatches(target, emu.snapshot()) == []

    refreshed = sync(running, target, full_refresh=True)

    assert refreshed.backfill_sms == len(emu.snapshot())
    assert mismatches(target, emu.snapshot()) == []

    emu.delete_sms(imported["2004"])
    emu.delete_sms(imported["future"])
    emu.clock.advance(45 * 86400)  # the deletes' events expire: only a reconcile sees them

    reconciled = sync(running, target)

    assert reconciled.mode == "reconcile"
    assert reconciled.removed == 2
    assert mismatches(target, emu.snapshot()) == []
    assert imported["epoch"] in emu.snapshot()


# --- what the event log does not say ---------------------------------------------------------


def test_a_change_close_made_without_an_event_arrives_within_one_run(emulator, target):
    running = emulator(sms=400, seed=44)
    emu = running.emu
    sync(running, target)
    recent = _dated(emu, emu.clock.now() - timedelta(hours=2), "sent a while ago", "sent")
    sync(running, target)
    # Past the feed's lookback, so that no event of this run names the SMS.
    emu.clock.advance(settings.EVENT_LOOKBACK_SECONDS + 60)
    sync(running, target)
    logged = [e for e in emu.events() if e["object_id"] == recent]
    emu.record_delivery_failure(recent)
    assert [e for e in emu.events() if e["object_id"] == recent] == logged  # no event for it
    stored = f"SELECT status FROM close_sms.sms WHERE id = '{recent}'"
    assert count(target, stored) == "sent"

    report = sync(running, target)

    assert report.recent_changed == 1
    assert count(target, stored) == "error"
    assert mismatches(target, emu.snapshot()) == []

    # Nothing changed since: the re-read finds every recent SMS equal and loads none.
    quiet = sync(running, target)

    assert quiet.recent_changed == 0


def test_a_reconcile_runs_by_itself_after_the_configured_interval(emulator, tmp_path):
    # A change the event log never records (a lead merge, a lost event).
    running = emulator(sms=300, seed=45, unlogged_actions={"deleted"})
    emu = running.emu
    database = tmp_path / "w.duckdb"
    sync(running, database)
    victim = sorted(emu.snapshot())[0]
    emu.delete_sms(victim)
    emu.clock.advance(8 * 86400)

    off = sync(running, database, reconcile_interval_days=0)

    assert off.mode == "incremental"
    assert mismatches(database, emu.snapshot()) == [f"extra {victim}"]

    on = sync(running, database)

    assert on.mode == "reconcile"
    assert on.removed == 1
    assert mismatches(database, emu.snapshot()) == []
    assert settings.RECONCILE_INTERVAL_DAYS == 7


def test_an_sms_missing_from_an_id_answer_is_removed_only_after_its_own_404(emulator, target):
    # The `deleted` event is lost: only Close's 404 for the id itself proves the delete.
    running = emulator(sms=300, seed=46, unlogged_actions={"deleted"})
    emu = running.emu
    template = next(iter(emu.snapshot().values()))
    draft = {name: template[name] for name in ("lead_id", "contact_id", "remote_phone")}
    changed, gone = (emu.create_sms({**draft, "status": "draft"})["id"] for _ in range(2))
    sync(running, target)
    emu.update_sms(gone, {"text": "edited, then deleted"})
    emu.update_sms(changed, {"text": "edited"})
    emu.delete_sms(gone)
    emu.clear_request_log()

    report = sync(running, target)

    assert report.deleted == 1
    assert mismatches(target, emu.snapshot()) == []
    item_requests = [
        (r.path.rsplit("/", 2)[-2], r.status) for r in emu.request_log if "/acti_" in r.path
    ]
    # Only the SMS the id__in answer left out was asked for alone.
    assert item_requests == [(gone, 404)]


# --- answers the backfill and the feed must not trust ------------------------------------------


def _burst(emu, size: int) -> None:
    """`size` SMS sharing one date_created, so that paging needs offsets inside one second."""
    moment = (emu.clock.now() - timedelta(days=3)).replace(microsecond=0)
    for n in range(size):
        _dated(emu, moment, f"burst {n}")


def _stops_loudly(result, says: str) -> None:
    assert result.returncode == 4, result.stderr
    line = one_line_error(result.stderr)
    assert says in line, line
    assert "nothing from this step was committed" in line


def test_an_ignored_id_filter_stops_the_feed_and_commits_nothing(emulator, tmp_path):
    running = emulator(sms=400, seed=47, ignored_filters={"id__in"})
    emu = running.emu
    database = tmp_path / "w.duckdb"
    assert sync_cli(running, database).returncode == 0  # the backfill does not use id__in
    before, checked = fingerprint(database), status(database)["feed_checked_at"]
    change_account(emu)

    _stops_loudly(sync_cli(running, database), "ignored the id__in filter")

    assert fingerprint(database) == before
    assert status(database)["feed_checked_at"] == checked


@pytest.mark.parametrize("ignored", ["object_type", "action", "date_updated__gte"])
def test_an_ignored_event_filter_stops_the_feed_and_commits_nothing(emulator, tmp_path, ignored):
    running = emulator(sms=400, seed=52, ignored_event_filters={ignored})
    emu = running.emu
    database = tmp_path / "w.duckdb"
    first = sync_cli(running, database)
    # The backfill loads either way; the feed after it sees no recent event but, with its date
    # filter ignored, the older ones of the log.
    if ignored == "date_updated__gte":
        _stops_loudly(first, "a filter was not applied")
    else:
        assert first.returncode == 0, first.stderr
    assert mismatches(database, emu.snapshot()) == []
    before, checked = fingerprint(database), status(database)["feed_checked_at"]
    assert (checked is None) == (ignored == "date_updated__gte")
    change_account(emu)
    emu.delete_lead(emu.lead_ids()[-1])  # an event of another object type

    _stops_loudly(sync_cli(running, database), "a filter was not applied")

    assert fingerprint(database) == before
    assert status(database)["feed_checked_at"] == checked


def test_an_unread_post_override_stops_the_feed_and_commits_nothing(emulator, tmp_path):
    running = emulator(sms=400, seed=48, override_params_readable=False)
    emu = running.emu
    database = tmp_path / "w.duckdb"
    assert sync_cli(running, database).returncode == 0
    before = fingerprint(database)
    for n in range(60):  # more ids than fit in a URL: the POST override form
        _dated(emu, emu.clock.now(), f"one of many {n}")

    _stops_loudly(sync_cli(running, database), "ignored the id__in filter")

    assert fingerprint(database) == before


@pytest.mark.parametrize(
    ("behaviour", "burst", "says"),
    [
        (
            {"ignored_filters": {"date_created__gte", "date_created__lt"}},
            0,
            "outside the date_created",
        ),
        ({"page_order": "oldest_first_pages"}, 0, "not newest first"),
        # Only SMS sharing a second are paged by offset, where an unstable order would show.
        ({"unstable_tie_order": True}, 260, "order of SMS sharing a timestamp changed"),
    ],
)
def test_a_page_that_breaks_the_backfill_s_assumptions_stops_it(
    emulator, tmp_path, behaviour, burst, says
):
    running = emulator(sms=400, seed=49, **behaviour)
    _burst(running.emu, burst)
    database = tmp_path / "w.duckdb"

    _stops_loudly(sync_cli(running, database, **FAST_FAIL), says)

    assert (
        count(database, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'sms'")
        == 0
    )


def test_a_404_empty_query_mid_paging_is_retried(emulator, tmp_path):
    running = emulator(sms=300, seed=50, empty_query_on_delete=True)
    emu = running.emu
    _burst(emu, 260)
    emu.delete_sms(sorted(emu.snapshot())[0])  # the next list page with an offset answers 404

    report = sync(running, tmp_path / "w.duckdb")

    empty_queries = [
        r for r in emu.request_log if r.path.endswith("/activity/sms/") and r.status == 404
    ]
    assert len(empty_queries) == 1
    assert report.mode == "backfill"
    assert mismatches(tmp_path / "w.duckdb", emu.snapshot()) == []


def test_generated_imports_and_empty_event_pages_sync_exactly(emulator, tmp_path):
    running = emulator(sms=1500, seed=51, imported_history=True, empty_event_pages=True)
    emu = running.emu
    created = sorted(sms["date_created"] for sms in emu.snapshot().values())
    assert created[0] < "2013" and created[-1] > emu.clock.now().isoformat()
    database = tmp_path / "w.duckdb"

    sync(running, database)
    assert mismatches(database, emu.snapshot()) == []
    change_account(emu)
    report = sync(running, database)

    assert report.events > 0
    assert mismatches(database, emu.snapshot()) == []


def _reader(running, windows, **options):
    from close_sms.source.api.client import CloseClient
    from close_sms.source.sms.backfill import BackfillReader

    return BackfillReader(CloseClient(running.base_url, running.api_key), windows, **options)


def test_deleting_the_last_sms_read_before_the_next_page_is_no_alarm(emulator):
    from close_sms.source.sms.backfill import Window

    running = emulator(sms=250, seed=52)
    emu = running.emu
    whole = [Window(0, settings.OPEN_END_MS)]
    read: list[str] = []
    for number, page in enumerate(_reader(running, whole, workers=1).pages()):
        read += [sms["id"] for sms in page]
        if number == 0:
            # The next page starts at offset 0 of that SMS's second, which then holds nothing read.
            emu.delete_sms(page[-1]["id"])

    assert set(emu.snapshot()) <= set(read)


def test_a_resumed_window_still_checks_and_drops_its_re_read_overlap(emulator):
    from close_sms.errors import ApiContractError
    from close_sms.source.sms.backfill import Window

    running = emulator(sms=5, seed=53, unstable_tie_order=True)
    _burst(running.emu, 260)
    first = _reader(running, [Window(0, settings.OPEN_END_MS)], workers=1)
    pages = first.pages()
    assert len(next(pages)) == 100
    pages.close()
    # What a chunk commits, and the next run restores.
    resumed = [Window.from_state(window.to_state()) for window in first.pending]
    assert any(window.tail for window in resumed)

    with pytest.raises(ApiContractError, match="order of SMS sharing a timestamp changed"):
        list(_reader(running, resumed, workers=1).pages())


def test_the_feed_stops_before_removing_many_sms_proven_gone_only_by_404s(emulator, tmp_path):
    # The `deleted` events are lost; each SMS's own 404 proves it gone, but so many at once
    # without a `deleted` event behind them stop the run before anything is removed.
    running = emulator(sms=400, seed=54, unlogged_actions={"deleted"})
    emu = running.emu
    template = next(iter(emu.snapshot().values()))
    draft = {name: template[name] for name in ("lead_id", "contact_id", "remote_phone")}
    drafts = [emu.create_sms({**draft, "status": "draft"})["id"] for _ in range(120)]
    database = tmp_path / "w.duckdb"
    assert sync_cli(running, database).returncode == 0
    rows = count(database, "SELECT count(*) FROM close_sms.sms")
    for sms_id in drafts:
        emu.update_sms(sms_id, {"text": "edited, then deleted"})
        emu.delete_sms(sms_id)

    refused = sync_cli(running, database)

    assert refused.returncode == 7, refused.stderr
    assert "120 of the" in one_line_error(refused.stderr)
    assert count(database, "SELECT count(*) FROM close_sms.sms") == rows

    allowed = sync_cli(running, database, "--allow-mass-delete")

    assert allowed.returncode == 0, allowed.stderr
    assert mismatches(database, emu.snapshot()) == []
