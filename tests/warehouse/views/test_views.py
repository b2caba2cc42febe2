"""Each view against a small hand-made account loaded with dlt, edge cases spelled out.

Every test runs on DuckDB and on PostgreSQL; the last ones check both give the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from close_sms.source.sms.schema import event_columns, sms_columns
from close_sms.warehouse.ledger import write_runs
from close_sms.warehouse.views import apply_views
from tests.warehouse.views import expected
from tests.warehouse.views.dataset import DESTINATIONS, UTC, Loader, column_names
from tests.warehouse.views.dataset import rows_as_dicts as query
from tests.warehouse.views.fixture_data import (
    DAY4,
    DELETED,
    MAIN_LINE,
    SUPPORT_LINE,
    UNLISTED_LINE,
    context_rows,
    event_rows,
    minutes,
    sms_rows,
    sync_runs,
)

VIEWS = [
    "sms_messages",
    "sms_attachments_flat",
    "sms_daily",
    "sms_user_daily",
    "sms_response_times",
    "sms_conversations",
    "sms_delivery_outcomes",
    "sms_delivery",
    "sms_reply_outcomes",
    "sms_outbound_outcomes",
    "sms_opt_outs",
    "sms_ai_vs_human",
    "sms_template_performance",
    "sms_by_lead_status",
    "sms_numbers",
    "sms_status_changes",
    "sync_health",
]
SMS_VIEWS = [name for name in VIEWS if name not in ("sms_status_changes", "sync_health")]


@pytest.fixture(scope="module")
def accounts(new_loader) -> dict[str, Loader]:
    """The hand-made account, loaded into each destination, views applied."""
    loaders = {}
    for kind in DESTINATIONS:
        loader = new_loader(kind)
        loader.load(sms=sms_rows(), events=event_rows(), context=context_rows())
        loader.delete(*DELETED)
        with loader.sql_client() as sql:
            write_runs(sql, sync_runs())
            assert apply_views(sql) == VIEWS
        loaders[kind] = loader
    return loaders


@pytest.fixture(scope="module", params=DESTINATIONS)
def account(request, accounts):
    """A read-only sql client on the account, once per destination."""
    with accounts[request.param].sql_client(read_only=True) as sql:
        # A zone east of UTC: a date taken in the session's zone would move sms_13 to March 2nd.
        sql.execute_sql("SET TimeZone = 'Asia/Tokyo'")
        yield sql


@pytest.fixture(scope="module")
def rows():
    """The SMS Close still holds: the loaded ones minus the deleted ones."""
    return [row for row in sms_rows() if row["id"] not in DELETED]


def rounded(record: dict) -> dict:
    """Floats (seconds, rates) to 6 places: exact enough, immune to float noise."""
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in record.items()}


def test_sms_messages(account, rows):
    got = {r["id"]: r for r in query(account, "SELECT * FROM close_sms.sms_messages")}
    want = expected.messages(rows)
    assert set(got) == set(want)
    for sms_id, answer in want.items():
        assert {k: got[sms_id][k] for k in answer} == answer, sms_id
    # All of sms's data columns, none of dlt's bookkeeping ones.
    columns = column_names(account, "sms_messages")
    raw = column_names(account, "sms")
    assert not {"_dlt_id", "_dlt_load_id", "_deleted"} & set(columns)
    assert set(raw) - {"_dlt_id", "_dlt_load_id", "_deleted"} <= set(columns)
    # Spelled out: null date_sent falls back to activity_at, then to date_created, and the
    # UTC date is kept although the session runs in Tokyo.
    assert got["sms_01"]["message_at"] == minutes(0)
    assert got["sms_13"]["message_at"] == dt.datetime(2024, 3, 1, 23, 30, tzinfo=UTC)
    assert got["sms_13"]["message_date"] == dt.date(2024, 3, 1)
    assert got["sms_12"]["attachment_count"] == 3
    assert got["sms_12"]["cost"] == Decimal("0.03")
    assert got["sms_14"]["is_failed"] is True


def test_sms_messages_name_what_the_sms_point_to(account, rows):
    want = expected.names(rows, context_rows())
    columns = ", ".join(next(iter(want.values())))
    got = {
        r.pop("id"): r for r in query(account, f"SELECT id, {columns} FROM close_sms.sms_messages")
    }
    assert got == want
    # Spelled out, so the Python model is checked too.
    assert got["sms_03a"] == {
        "user_email": "bo@example.invalid",
        "lead_name": "Acme Corp",
        "lead_status_id": "stat_potential",
        "lead_status_label": "Potential",
        "contact_name": "Alice Customer",
        "template_name": "Hello",
        "local_phone_label": "Main line",
        "local_phone_owner_id": "user_1",
        "local_phone_owner_name": "Ann Lee",
    }
    # A renamed status shows its new label; one Close no longer lists, the lead's own copy.
    assert got["sms_10"]["lead_status_label"] == "Won"
    assert got["sms_14"]["lead_status_label"] == "Lost"
    # The re-issued number: the row updated last, Bo's, wins, and the SMS stays one row.
    assert (got["sms_14"]["local_phone_label"], got["sms_14"]["local_phone_owner_name"]) == (
        "Support",
        "Bo Chen",
    )
    # What the context lacks is null: a lead, a template, a number, a user's last name.
    assert got["sms_13"]["lead_name"] is None and got["sms_13"]["contact_name"] is None
    assert got["sms_12"]["template_name"] is None
    assert got["sms_15"]["local_phone_label"] is None
    assert got["sms_10"]["user_email"] == "cy@example.invalid"


def test_sms_attachments_flat(account, rows):
    got = {
        tuple(r.values())
        for r in query(
            account,
            """SELECT sms_id, media_id, content_type, filename, size, url, lead_id, direction,
                      message_at FROM close_sms.sms_attachments_flat""",
        )
    }
    assert got == expected.attachments_flat(rows)
    assert sorted(m for s, m, *_ in got if s == "sms_12") == ["media_12a", "media_12b", "media_12c"]


def test_sms_daily(account, rows):
    got = {
        (r.pop("message_date"), r.pop("direction"), r.pop("status")): r
        for r in query(
            account,
            """SELECT message_date, direction, status, message_count, attachment_count,
                      total_cost_cents, lead_count FROM close_sms.sms_daily""",
        )
    }
    assert got == expected.daily(rows)


def test_sms_user_daily(account, rows):
    got = {
        (r.pop("user_id"), r.pop("message_date")): r
        for r in query(
            account,
            """SELECT user_id, message_date, sent_count, received_count, failed_count,
                      total_cost_cents FROM close_sms.sms_user_daily""",
        )
    }
    assert got == expected.user_daily(rows)


def test_sms_response_times(account, rows):
    got = {
        r.pop("inbound_id"): r
        for r in query(
            account,
            """SELECT inbound_id, lead_id, inbound_at, reply_id, replied_at,
                      replied_by_user_id, response_seconds FROM close_sms.sms_response_times""",
        )
    }
    want = expected.response_times(rows)
    assert set(got) == set(want)
    for inbound_id, answer in want.items():
        assert rounded(got[inbound_id]) == rounded(answer), inbound_id
    # Spelled out, so the Python model is checked too.
    replies = {k: (v["reply_id"], v["response_seconds"]) for k, v in got.items()}
    assert replies == {
        "sms_01": ("sms_03a", 300.0),  # a draft is skipped; tie at +5 min -> smaller id
        "sms_05": ("sms_07", 600.0),
        "sms_06": ("sms_07", 480.0),
        "sms_08": (None, None),  # an outbound at the same instant is no reply
        # sms_11 (+1 min) is on another lead and sms_22 (+2 min) was deleted: the first
        # reply is sms_12 a day later, on the same lead from another phone.
        "sms_10": ("sms_12", 79200.0),
        "sms_13": (None, None),
        "sms_23": (None, None),  # no lead: never matched
        "sms_31": ("sms_32", 300.0),
        "sms_33": ("sms_35", 900.0),  # the draft sms_34 is skipped
        **dict.fromkeys(("sms_36", "sms_37", "sms_38", "sms_39", "sms_40"), (None, None)),
        **dict.fromkeys(("sms_42", "sms_43"), (None, None)),
        # A send the carrier refused answers the customer as much as one it delivered.
        "sms_45": ("sms_46", 120.0),
        "sms_47": ("sms_48", 120.0),
        "sms_49": ("sms_50", 120.0),
    }
    assert got["sms_01"]["replied_by_user_id"] == "user_2"


def test_replies_conversations_and_events_speak_names(account, rows):
    context = context_rows()

    def named(view: str, keys: tuple[str, ...], names: str) -> dict:
        """`names` of `view`, by its `keys` (one key: the value, else a tuple)."""
        rows = query(account, f"SELECT {', '.join(keys)}, {names} FROM close_sms.{view}")
        return {tuple(r.pop(k) for k in keys) if len(keys) > 1 else r.pop(keys[0]): r for r in rows}

    replies = named(
        "sms_response_times", ("inbound_id",), "lead_name, contact_name, replied_by_user_name"
    )
    assert replies == expected.response_names(rows, context)
    conversations = named(
        "sms_conversations", ("lead_id", "remote_phone"), "lead_name, contact_name, last_user_name"
    )
    assert conversations == expected.conversation_names(rows, context)
    events = named("sms_status_changes", ("event_id",), "user_name, lead_name")
    assert events == expected.event_names(event_rows(), context)
    # Spelled out, so the Python model is checked too.
    assert replies["sms_01"] == {
        "lead_name": "Acme Corp",
        "contact_name": "Alice Customer",
        "replied_by_user_name": next(r["user_name"] for r in rows if r["id"] == "sms_03a"),
    }
    for answers in (replies, conversations, events):
        assert any(a["lead_name"] for a in answers.values())
    assert any(a["contact_name"] for a in conversations.values())
    assert any(a["last_user_name"] for a in conversations.values())
    assert any(a["user_name"] for a in events.values())


def test_sms_conversations(account, rows):
    got = {
        (r.pop("lead_id"), r.pop("remote_phone")): r
        for r in query(
            account,
            """SELECT lead_id, remote_phone, first_message_at, last_message_at, inbound_count,
                      outbound_count, last_direction, awaiting_reply
               FROM close_sms.sms_conversations""",
        )
    }
    assert got == expected.conversations(rows)
    busy = got[("lead_a", "+15550000001")]
    assert (busy["inbound_count"], busy["outbound_count"]) == (4, 4)  # deleted and draft left out
    assert busy["awaiting_reply"] is True  # tie at +30 min: the inbound counts as last
    # Its reply was deleted; sms_12 went to the lead's other phone, another conversation.
    assert got[("lead_b", "+15550000002")]["awaiting_reply"] is True


def test_sms_delivery(account, rows):
    got = {
        r.pop("message_date"): r
        for r in query(
            account,
            """SELECT message_date, outbound_count, sent_count, failed_count, failure_rate,
                      top_error_message FROM close_sms.sms_delivery""",
        )
    }
    want = expected.delivery(rows)
    assert {k: rounded(v) for k, v in got.items()} == {k: rounded(v) for k, v in want.items()}
    assert got[dt.date(2024, 3, 1)]["top_error_message"] == "Carrier violation"  # 1-1 tie
    assert got[dt.date(2024, 3, 2)]["top_error_message"] == "Unreachable"


def test_sms_delivery_and_reply_outcomes(account, rows):
    failed = {
        r["id"]: r["failed"]
        for r in query(account, "SELECT id, failed FROM close_sms.sms_delivery_outcomes")
    }
    assert failed == expected.delivery_outcomes(rows)
    assert column_names(account, "sms_delivery_outcomes") == [
        *column_names(account, "sms_messages"),
        "failed",
    ]
    got = {
        r.pop("id"): rounded(r)
        for r in query(
            account,
            """SELECT id, failed, sender_kind, reply_seconds, replied
               FROM close_sms.sms_reply_outcomes""",
        )
    }
    assert got == {k: rounded(v) for k, v in expected.reply_outcomes(rows).items()}
    # Spelled out: inbound SMS and drafts have no outcome, and drafts are no outbound outcome;
    # sms_03b was answered, sms_09 (sent at the instant sms_08 came in) was not.
    assert failed["sms_01"] is None and failed["sms_02"] is None and "sms_02" not in got
    assert (failed["sms_14"], failed["sms_07"], failed["sms_19"]) == (1.0, 0.0, None)
    assert (got["sms_03b"]["replied"], got["sms_09"]["replied"]) == (1.0, 0.0)
    assert (got["sms_15"]["replied"], got["sms_19"]["replied"]) == (None, None)
    # sms_outbound_outcomes: the same rows, without the two numbers.
    columns = column_names(account, "sms_reply_outcomes")
    assert column_names(account, "sms_outbound_outcomes") == [
        c for c in columns if c not in ("failed", "replied")
    ]
    ((outbound,),) = account.execute_sql("SELECT count(*) FROM close_sms.sms_outbound_outcomes")
    assert outbound == len(got)


def test_sms_opt_outs(account, rows):
    got = {
        (r.pop("lead_id"), r.pop("remote_phone"), r.pop("opted_out_at")): r
        for r in query(account, "SELECT * FROM close_sms.sms_opt_outs")
    }
    assert got == expected.opt_outs(rows)
    # Spelled out, so the Python model is checked too.
    by_lead = {lead: row for (lead, _, _), row in got.items()}
    assert sorted((lead, at) for lead, _, at in got) == [
        ("lead_o1", minutes(205)),  # "  stop ", not the second STOP
        ("lead_o2", minutes(200)),
        ("lead_o3", minutes(205)),
        ("lead_o5", minutes(200)),
        ("lead_o6", minutes(DAY4)),
        ("lead_o6", minutes(DAY4 + 8)),
    ]
    texted_on = by_lead["lead_o1"]
    assert (texted_on["opt_out_keyword"], texted_on["is_active"]) == ("STOP", True)
    assert texted_on["sent_after_opt_out_count"] == 2  # the sequence and the rep, not the draft
    assert texted_on["refused_after_opt_out_count"] == 1
    assert (texted_on["last_sent_after_opt_out_id"], texted_on["last_user_id"]) == (
        "sms_35",
        "user_3",
    )
    revoked = by_lead["lead_o2"]
    assert (revoked["is_active"], revoked["revoked_by_keyword"]) == (False, "YES")
    assert revoked["revoked_at"] == minutes(210)
    never_texted = by_lead["lead_o3"]
    assert (never_texted["opt_out_sms_id"], never_texted["opt_out_keyword"]) == ("sms_39", "QUIT")
    assert never_texted["sent_after_opt_out_count"] == 0
    assert never_texted["last_user_id"] is None
    # The same instant: the larger id is the later, so UNSTOP revoked END at once.
    assert (by_lead["lead_o5"]["revoked_by_sms_id"], by_lead["lead_o5"]["is_active"]) == (
        "sms_43",
        False,
    )
    first, second = (got[("lead_o6", "+15550016", minutes(DAY4 + at))] for at in (0, 8))
    assert (first["opt_out_keyword"], first["revoked_by_keyword"]) == ("OPT OUT", "START")
    # The send between START and REVOKE counts for neither opt-out.
    assert (first["refused_after_opt_out_count"], first["sent_after_opt_out_count"]) == (1, 0)
    assert (second["opt_out_keyword"], second["is_active"]) == ("REVOKE", True)
    assert (second["refused_after_opt_out_count"], second["sent_after_opt_out_count"]) == (0, 1)
    assert second["last_sent_after_opt_out_id"] == "sms_50"


def test_sms_ai_vs_human(account, rows):
    got = {
        (r.pop("message_date"), r.pop("sender_kind")): rounded(r)
        for r in query(account, "SELECT * FROM close_sms.sms_ai_vs_human")
    }
    assert got == {key: rounded(v) for key, v in expected.ai_vs_human(rows).items()}
    # Spelled out: day 1's AI agent sent sms_03b, sms_11 and sms_30 and failed sms_15; the
    # customer answered sms_03b and sms_30 5 minutes later, sms_11 never.
    ai = got[(dt.date(2024, 3, 1), "ai_agent")]
    assert (ai["outbound_count"], ai["sent_count"], ai["failed_count"]) == (4, 3, 1)
    assert (ai["replied_count"], ai["median_reply_seconds"]) == (2, 300.0)
    assert ai["failure_rate"] == 0.25
    sequence = got[(dt.date(2024, 3, 1), "sequence")]
    # sms_09 went out at the instant sms_08 came in: no reply; sms_32 got STOP back.
    assert (sequence["sent_count"], sequence["replied_count"]) == (2, 1)
    rep = got[(dt.date(2024, 3, 1), "rep")]
    # sms_03a is followed by sms_03b, not by the customer: the reply goes to the last one.
    assert rep["replied_count"] == 1 and rep["median_reply_seconds"] == 600.0  # sms_07
    assert set(got) == {
        (day, kind)
        for day in (dt.date(2024, 3, 1), dt.date(2024, 3, 2))
        for kind in ("ai_agent", "sequence", "rep")
    } - {(dt.date(2024, 3, 2), "ai_agent"), (dt.date(2024, 3, 2), "sequence")} | {
        (dt.date(2024, 3, 4), "rep")  # the sends after the opt-outs, three days on
    }


def test_sms_template_performance(account, rows):
    got = {
        r.pop("template_id"): rounded(r)
        for r in query(
            account,
            """SELECT template_id, template_name, outbound_count, sent_count, failed_count,
                      failure_rate, replied_count, reply_rate, median_reply_seconds, lead_count
               FROM close_sms.sms_template_performance""",
        )
    }
    want = expected.template_performance(rows, context_rows())
    assert got == {key: rounded(v) for key, v in want.items()}
    # Spelled out: the draft sms_02 is left out; sms_07 was answered 10 min later, sms_03a not
    # (sms_03b followed it); sms_14 failed.
    hello = got["tmpl_hello"]
    assert (hello["template_name"], hello["outbound_count"]) == ("Hello", 3)
    assert (hello["sent_count"], hello["failed_count"], hello["replied_count"]) == (2, 1, 1)
    assert (hello["reply_rate"], hello["median_reply_seconds"]) == (0.5, 600.0)
    assert hello["failure_rate"] == round(1 / 3, 6)
    # The outbox sms_19 counts as outbound, neither sent nor failed.
    remind = got["tmpl_remind"]
    assert (remind["outbound_count"], remind["sent_count"], remind["reply_rate"]) == (2, 1, 1.0)
    assert got["tmpl_gone"]["template_name"] is None
    assert set(got) == {"tmpl_hello", "tmpl_remind", "tmpl_gone"}


def test_sms_by_lead_status(account, rows):
    got = {
        r.pop("lead_status_id"): rounded(r)
        for r in query(
            account,
            """SELECT lead_status_id, lead_status_label, message_count, inbound_count,
                      outbound_count, sent_count, failed_count, failure_rate, replied_count,
                      reply_rate, median_reply_seconds, lead_count
               FROM close_sms.sms_by_lead_status""",
        )
    }
    want = expected.by_lead_status(rows, context_rows())
    assert got == {key: rounded(v) for key, v in want.items()}
    # Spelled out: lead_b's renamed status; lead_c's status gone from Close, every outbound
    # SMS on it failed but sms_11; leads outside the context have no status.
    assert (got["stat_won"]["lead_status_label"], got["stat_won"]["message_count"]) == ("Won", 2)
    gone = got["stat_gone"]
    assert (gone["lead_status_label"], gone["sent_count"], gone["failed_count"]) == ("Lost", 1, 5)
    assert got[None]["lead_status_label"] is None
    potential = got["stat_potential"]
    assert potential["lead_count"] == 2  # lead_a and lead_o1


def test_sms_numbers(account, rows):
    got = {
        r.pop("local_phone"): rounded(r)
        for r in query(account, "SELECT * FROM close_sms.sms_numbers")
    }
    assert got == {key: rounded(v) for key, v in expected.numbers(rows, context_rows()).items()}
    # Spelled out: the support line only failed, "Unreachable" three times out of four.
    support = got[SUPPORT_LINE]
    assert (support["local_phone_label"], support["owner_name"]) == ("Support", "Bo Chen")
    assert (support["failed_count"], support["failure_rate"]) == (4, 1.0)
    assert (support["top_error_message"], support["top_error_count"]) == ("Unreachable", 3)
    unlisted = got[UNLISTED_LINE]
    assert (unlisted["local_phone_label"], unlisted["owner_user_id"]) == (None, None)
    assert unlisted["top_error_message"] == "Carrier violation"
    assert got[MAIN_LINE]["owner_name"] == "Ann Lee"
    assert got[MAIN_LINE]["top_error_message"] is None


def test_sms_status_changes(account):
    got = {
        r.pop("event_id"): r
        for r in query(
            account,
            """SELECT event_id, object_id, action, date_updated, event_number,
                      previous_event_at, seconds_since_previous
               FROM close_sms.sms_status_changes""",
        )
    }
    want = expected.status_changes(event_rows())
    assert {k: rounded(v) for k, v in got.items()} == {k: rounded(v) for k, v in want.items()}
    assert [got[e]["action"] for e in ("ev_03c", "ev_03s", "ev_03u")] == [
        "created",
        "sent",
        "updated",
    ]
    assert got["ev_03s"]["seconds_since_previous"] == 30.0  # created -> sent
    assert got["ev_07x"]["event_number"] == 1 and got["ev_07y"]["event_number"] == 2
    # The deleted SMS keeps its history here.
    assert got["ev_21d"]["action"] == "deleted"


def test_sync_health(account):
    got = {
        r.pop("run_date"): rounded(r) for r in query(account, "SELECT * FROM close_sms.sync_health")
    }
    want = {day: rounded(answer) for day, answer in expected.sync_health(sync_runs()).items()}
    assert {day: {k: got[day][k] for k in answer} for day, answer in want.items()} == want
    # Spelled out: day 1 (UTC, although the session runs in Tokyo) has both failures, the
    # later one's error last; the locked run is counted apart from the failures.
    day1 = got[dt.date(2024, 3, 1)]
    assert (day1["runs"], day1["failed_runs"], day1["locked_runs"]) == (6, 2, 1)
    assert day1["last_error"] == "HTTP 503"
    assert day1["max_lag_seconds"] == 630.0
    assert got[dt.date(2024, 3, 2)]["last_success_at"] is None


@pytest.mark.parametrize("view", SMS_VIEWS)
def test_deleted_sms_vanish_from_every_view_on_sms(account, rows, view):
    # No row mentions a deleted SMS id (rows of views that carry ids) ...
    ((mentions,),) = account.execute_sql(
        f"SELECT count(*) FROM close_sms.{view} AS v"
        " WHERE strpos(CAST(v AS VARCHAR), %s) > 0 OR strpos(CAST(v AS VARCHAR), %s) > 0",
        *DELETED,
    )
    assert mentions == 0
    # ... and the SMS counted by each view are exactly the ones left (aggregated views).
    left_drafts = [
        r for r in rows if r["direction"] == "outbound" and r["status"] not in expected.UNSENT
    ]
    counted = {
        "sms_messages": ("count(*)", len(rows)),
        "sms_attachments_flat": ("count(*)", sum(len(r["attachments"]) for r in rows)),
        "sms_daily": ("sum(message_count)", len(rows)),
        "sms_user_daily": ("sum(message_count)", len(rows)),
        "sms_response_times": (
            "count(*)",
            sum(r["direction"] == "inbound" for r in rows),
        ),
        "sms_conversations": (
            "sum(message_count)",
            sum(r["status"] not in expected.UNSENT for r in rows),
        ),
        "sms_delivery_outcomes": ("count(*)", len(rows)),
        "sms_delivery": ("sum(outbound_count)", sum(r["direction"] == "outbound" for r in rows)),
        "sms_reply_outcomes": ("count(*)", len(left_drafts)),
        "sms_outbound_outcomes": ("count(*)", len(left_drafts)),
        "sms_opt_outs": ("count(*)", len(expected.opt_outs(rows))),
        "sms_ai_vs_human": ("sum(outbound_count)", len(left_drafts)),
        "sms_template_performance": (
            "sum(outbound_count)",
            sum(bool(r.get("template_id")) for r in left_drafts),
        ),
        "sms_by_lead_status": ("sum(message_count)", len(rows)),
        "sms_numbers": ("sum(message_count)", len(rows)),
    }
    aggregate, want = counted[view]
    assert account.execute_sql(f"SELECT {aggregate} FROM close_sms.{view}") == [(want,)]


def test_views_pick_up_new_sms_columns(loader):
    loader.load(sms=[sms_rows()[0]])
    with loader.sql_client() as sql:
        apply_views(sql)
    # A field Close adds after the views exist: dlt appends a column, applying again shows it.
    row = sms_rows()[1] | {"carrier_name": "Acme Mobile"}
    loader.load(sms=[row])
    with loader.sql_client() as sql:
        apply_views(sql)
        got = query(sql, "SELECT id, carrier_name FROM close_sms.sms_messages ORDER BY id")
        # The views on sms_messages were replaced with it and still work.
        assert sql.execute_sql("SELECT sum(message_count) FROM close_sms.sms_daily") == [(2,)]
    assert got == [
        {"id": "sms_01", "carrier_name": None},
        {"id": "sms_02", "carrier_name": "Acme Mobile"},
    ]


_JSON_COLUMNS = {
    name
    for hints in (sms_columns(), event_columns())
    for name, hint in hints.items()
    if hint["data_type"] == "json"
}


def comparable(column: str, value):
    """One value as both destinations can agree on it.

    Numbers as floats (PostgreSQL sums to NUMERIC where DuckDB has integers and DOUBLE),
    instants in UTC, and JSON parsed (DuckDB returns its text, psycopg2 the value).
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        return round(float(value), 6)
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC)
    if column in _JSON_COLUMNS and isinstance(value, str):
        return json.loads(value)
    return value


def test_views_return_the_same_rows_on_every_destination(accounts):
    answers = {}
    for kind, loader in accounts.items():
        with loader.sql_client(read_only=True) as sql:
            answers[kind] = {}
            for view in VIEWS:
                rows = [
                    {k: comparable(k, v) for k, v in row.items()}
                    for row in query(sql, f"SELECT * FROM close_sms.{view}")
                ]
                answers[kind][view] = (column_names(sql, view), sorted(rows, key=repr))
    duckdb, postgres = (answers[kind] for kind in DESTINATIONS)
    for view in VIEWS:
        assert duckdb[view][1], view  # rows to compare
        assert postgres[view] == duckdb[view], view
