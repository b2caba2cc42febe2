"""The HTML report: built from an account shaped like the demo's, checked for its charts' data.

Every test runs on DuckDB and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
import statistics
import subprocess
from collections import Counter, defaultdict

import pytest

from close_sms.app.report import (
    NO_REPLY,
    RESPONSE_BUCKETS,
    TOP_NUMBERS,
    TOP_TEMPLATES,
    TOP_USERS,
    write_report,
)
from close_sms.errors import ConfigError
from close_sms.warehouse.ledger import write_runs
from close_sms.warehouse.views import apply_views
from tests.support import cli_env, run_cli
from tests.warehouse.views import expected
from tests.warehouse.views.dataset import DESTINATIONS, UTC, Loader, attachment, message_at, sms_row
from tests.warehouse.views.fixture_data import sync_runs

SEQUENCE = {"sequence_id": "seq_1", "sequence_name": "Follow-up"}
# More templates and numbers than a panel shows, a template and a number the context lacks.
TEMPLATES = [f"tmpl_{k:02d}" for k in range(TOP_TEMPLATES + 3)]
NUMBERS = [f"+1650555{k:04d}" for k in range(TOP_NUMBERS + 3)]


def demo_rows(n: int = 240, seed: int = 7) -> list[dict]:
    """A small account shaped like the demo's: conversations with replies, MMS, failures,
    opt-outs, and SMS sent by Close's AI agent and by a sequence."""
    rng = random.Random(seed)
    start = dt.datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    rows = []
    for i in range(n):
        at = start + dt.timedelta(minutes=rng.randrange(0, 10 * 24 * 60))
        lead = rng.randrange(25)
        inbound = rng.random() < 0.45
        status = "inbox" if inbound else rng.choice(["sent"] * 6 + ["error", "draft", "outbox"])
        user = None if inbound and rng.random() < 0.3 else f"user_{rng.randrange(7)}"
        sender = {} if inbound else rng.choice([{}] * 3 + [{"source": "ai"}, SEQUENCE])
        rows.append(
            sms_row(
                f"acti_{i:04d}",
                lead_id=f"lead_{lead:02d}",
                remote_phone=f"+1555000{lead:04d}",
                direction="inbound" if inbound else "outbound",
                status=status,
                user_id=user,
                user_name=user and f"Rep {user[-1]}",
                date_created=at,
                activity_at=at,
                date_sent=at if status == "sent" else None,
                cost=None if inbound else "0.0079",
                error_message=rng.choice(("Unreachable", "Blocked")) if status == "error" else None,
                attachments=[attachment(f"m_{i}_{k}") for k in range(rng.choice([0] * 8 + [1, 3]))],
                text=rng.choice(["STOP", " stop", "START", "Thanks"] + ["Sounds good"] * 6),
                template_id=None if inbound or rng.random() < 0.3 else rng.choice(TEMPLATES),
                local_phone=rng.choice(NUMBERS),
                **sender,
            )
        )
    return rows


def demo_context() -> dict[str, list[dict]]:
    """Names for all but the last template and number; number k belongs to user k."""
    return {
        "users": [{"id": f"user_{k}", "first_name": "Rep", "last_name": str(k)} for k in range(7)],
        "sms_templates": [{"id": t, "name": f"Template {t[-2:]}"} for t in TEMPLATES[:-1]],
        "phone_numbers": [
            {
                "id": f"phon_{k}",
                "number": n,
                "label": f"Line {k}",
                "user_id": f"user_{k % 7}",
                "date_updated": dt.datetime(2024, 5, 1, tzinfo=UTC),
            }
            for k, n in enumerate(NUMBERS[:-1])
        ],
    }


CHARTS = (
    "daily_volume",
    "delivery",
    "response_times",
    "busiest_users",
    "opt_outs",
    "senders",
    "templates",
    "numbers",
    "sync_health",
)


def report_of(loader: Loader, out) -> str:
    """The report page, written through a read-only client (a write would fail)."""
    with loader.sql_client(read_only=True) as sql:
        return write_report(sql, out).read_text(encoding="utf-8")


@pytest.fixture(scope="module", params=DESTINATIONS)
def report(request, new_loader, tmp_path_factory):
    """The report of a demo-shaped account, and whether the database file stayed the same."""
    loader = new_loader(request.param)
    rows = demo_rows()
    loader.load(sms=rows, context=demo_context())
    with loader.sql_client() as sql:
        write_runs(sql, sync_runs())
        apply_views(sql)
    out = tmp_path_factory.mktemp("out") / "report.html"
    if loader.kind != "duckdb":
        return report_of(loader, out), rows, None
    before = hashlib.sha256(loader.database.read_bytes()).hexdigest()
    page = report_of(loader, out)
    after = hashlib.sha256(loader.database.read_bytes()).hexdigest()
    return page, rows, before == after


def chart_data(page: str, name: str):
    match = re.search(rf'<script type="application/json" id="data-{name}">(.*?)</script>', page)
    assert match, name
    return json.loads(match.group(1))


def test_report_is_self_contained(report):
    page, _, _ = report
    # plotly.js is inline, and nothing is loaded from the network.
    assert len(page) > 3_000_000
    assert "plotly.js" in page
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=\"?https?:", page)
    for name in CHARTS:
        assert f'id="chart-{name}"' in page


@pytest.mark.parametrize("report", ["duckdb"], indirect=True)
def test_report_leaves_the_duckdb_file_unchanged(report):
    _, _, unchanged = report
    assert unchanged is True


def test_daily_volume(report):
    page, rows, _ = report
    want = Counter((expected.utc_date(message_at(r)).isoformat(), r["direction"]) for r in rows)
    got = {
        (r["message_date"], r["direction"]): r["message_count"]
        for r in chart_data(page, "daily_volume")
    }
    assert got == want


def test_delivery_failure_rate(report):
    page, rows, _ = report
    want = expected.delivery(rows)
    got = chart_data(page, "delivery")
    assert [r["message_date"] for r in got] == sorted(d.isoformat() for d in want)
    for record in got:
        answer = want[dt.date.fromisoformat(record["message_date"])]
        assert record["failed_count"] == answer["failed_count"]
        assert record["sent_count"] == answer["sent_count"]
        assert record["failure_rate"] == pytest.approx(answer["failure_rate"])
        assert record["top_error_message"] == answer["top_error_message"]


def test_response_time_distribution(report):
    page, rows, _ = report
    want = Counter()
    for answer in expected.response_times(rows).values():
        seconds = answer["response_seconds"]
        if seconds is None:
            want[NO_REPLY] += 1
            continue
        for label, upper in RESPONSE_BUCKETS:
            if upper is None or seconds < upper:
                want[label] += 1
                break
    got = chart_data(page, "response_times")
    assert {b["bucket"]: b["inbound_count"] for b in got["buckets"]} == {
        label: want[label] for label, _ in [*RESPONSE_BUCKETS, (NO_REPLY, None)]
    }
    assert got["summary"]["replied_count"] == sum(v for k, v in want.items() if k != NO_REPLY)
    assert want[NO_REPLY] > 0 and got["summary"]["replied_count"] > 0
    seconds = [
        answer["response_seconds"]
        for answer in expected.response_times(rows).values()
        if answer["response_seconds"] is not None
    ]
    # quantile_cont interpolates linearly between ranks, as the "inclusive" method does.
    assert got["summary"]["median_seconds"] == pytest.approx(statistics.median(seconds))
    deciles = statistics.quantiles(seconds, n=10, method="inclusive")
    assert got["summary"]["p90_seconds"] == pytest.approx(deciles[8])


def test_busiest_users(report):
    page, rows, _ = report
    totals: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        if r["user_id"] is None:
            continue
        totals[r["user_id"]]["sent"] += r["direction"] == "outbound" and r["status"] == "sent"
        totals[r["user_id"]]["received"] += r["direction"] == "inbound"
    ranked = sorted(totals, key=lambda u: (-(totals[u]["sent"] + totals[u]["received"]), u))
    got = chart_data(page, "busiest_users")
    assert [r["user_id"] for r in got] == ranked[:TOP_USERS]
    for record in got:
        assert record["sent_count"] == totals[record["user_id"]]["sent"]
        assert record["received_count"] == totals[record["user_id"]]["received"]
        names = {r["user_name"] for r in rows if r["user_id"] == record["user_id"]}
        assert record["user_name"] in names


def test_sync_health(report):
    page, _, _ = report
    want = expected.sync_health(sync_runs())
    got = chart_data(page, "sync_health")
    assert [r["run_date"] for r in got] == sorted(day.isoformat() for day in want)
    for record in got:
        answer = want[dt.date.fromisoformat(record["run_date"])]
        assert record["runs"] == answer["runs"]
        assert record["failed_runs"] == answer["failed_runs"]
        assert record["successful_runs"] == answer["successful_runs"]
        assert record["other_runs"] == answer["interrupted_runs"] + answer["locked_runs"]
        assert record["max_lag_seconds"] == answer["max_lag_seconds"]
        assert record["last_error"] == answer["last_error"]


def test_opt_outs(report):
    page, rows, _ = report
    opt_outs = expected.opt_outs(rows)
    want = Counter(expected.utc_date(opted_out_at).isoformat() for _, _, opted_out_at in opt_outs)
    got = chart_data(page, "opt_outs")
    assert {r["opt_out_date"]: r["opt_out_count"] for r in got["days"]} == want
    assert sum(r["sent_after_count"] for r in got["days"]) == sum(
        answer["sent_after_opt_out_count"] for answer in opt_outs.values()
    )
    assert sum(r["refused_after_count"] for r in got["days"]) == sum(
        answer["refused_after_opt_out_count"] > 0 for answer in opt_outs.values()
    )
    assert sum(want.values()) > 0 and got["texts"]["readable_count"] > 0
    assert sum(r["refused_after_count"] for r in got["days"]) > 0


def test_senders(report):
    page, rows, _ = report
    want = expected.ai_vs_human(rows)
    got = chart_data(page, "senders")
    assert {(r["message_date"], r["sender_kind"]) for r in got} == {
        (day.isoformat(), kind) for day, kind in want
    }
    for record in got:
        answer = want[(dt.date.fromisoformat(record["message_date"]), record["sender_kind"])]
        assert record["outbound_count"] == answer["outbound_count"]
        assert record["reply_rate"] == pytest.approx(answer["reply_rate"])
    assert {r["sender_kind"] for r in got} == {"ai_agent", "sequence", "rep"}


def test_templates(report):
    page, rows, _ = report
    want = expected.template_performance(rows, demo_context())
    ranked = sorted(want, key=lambda t: (-want[t]["outbound_count"], t))
    got = chart_data(page, "templates")
    assert [r["template_id"] for r in got] == ranked[:TOP_TEMPLATES]
    for record in got:
        answer = want[record["template_id"]]
        assert record["template_name"] == answer["template_name"]
        assert (record["sent_count"], record["failed_count"]) == (
            answer["sent_count"],
            answer["failed_count"],
        )
        assert record["reply_rate"] == pytest.approx(answer["reply_rate"])
    # Named where the context has the template: the chart shows the name, not the id.
    assert "Template 00" in page or "Template 01" in page
    assert all(r["template_name"] for r in got if r["template_id"] != TEMPLATES[-1])


def test_numbers(report):
    page, rows, _ = report
    want = expected.numbers(rows, demo_context())
    ranked = sorted(want, key=lambda n: (-want[n]["message_count"], n))
    got = chart_data(page, "numbers")
    assert [r["local_phone"] for r in got] == ranked[:TOP_NUMBERS]
    for record in got:
        answer = want[record["local_phone"]]
        assert record["owner_name"] == answer["owner_name"]
        assert record["local_phone_label"] == answer["local_phone_label"]
        assert record["failed_count"] == answer["failed_count"]
        assert record["failure_rate"] == pytest.approx(answer["failure_rate"])
        assert record["top_error_message"] == answer["top_error_message"]
    named = [r for r in got if r["local_phone"] != NUMBERS[-1]]
    assert named and all(r["owner_name"].startswith("Rep ") for r in named)
    assert all(r["local_phone_label"].startswith("Line ") for r in named)
    # The chart shows a number as its label and owner (plotly escapes the slash).
    label = f"{named[0]['local_phone_label']} \\u002f {named[0]['owner_name']}"
    assert label in page


def test_overview(report):
    page, rows, _ = report
    overview = chart_data(page, "overview")
    assert overview["sms_count"] == len(rows)
    assert overview["first_date"] == min(expected.utc_date(message_at(r)) for r in rows).isoformat()


def test_report_on_an_empty_database(loader, tmp_path):
    with loader.sql_client() as sql:
        apply_views(sql)
    page = report_of(loader, tmp_path / "empty.html")
    assert "No SMS in this database yet." in page
    assert chart_data(page, "daily_volume") == []
    assert chart_data(page, "sync_health") == []
    assert chart_data(page, "opt_outs")["days"] == []
    assert chart_data(page, "senders") == []
    assert chart_data(page, "templates") == []
    assert chart_data(page, "numbers") == []


def test_report_says_opt_outs_need_the_text(loader, tmp_path):
    loader.load(sms=[dict(row, text=None) for row in demo_rows(40)])
    with loader.sql_client() as sql:
        apply_views(sql)
    page = report_of(loader, tmp_path / "dropped.html")
    assert chart_data(page, "opt_outs")["texts"]["readable_count"] == 0
    assert "the SMS text is hashed or dropped" in page


def test_report_names_the_database(loader, tmp_path):
    with loader.sql_client() as sql:
        apply_views(sql)
        name = sql.database_name or loader.database.name
    page = report_of(loader, tmp_path / "r.html")
    assert f"database {name}" in page
    assert name.startswith("close_sms_test_" if loader.kind == "postgres" else "warehouse.")


def test_report_without_views_says_how_to_fix_it(loader, tmp_path):
    loader.load(sms=demo_rows(5))
    with pytest.raises(ConfigError, match="close-sms views"):
        report_of(loader, tmp_path / "r.html")


def test_the_hint_of_a_report_without_views_works_as_printed(new_loader, tmp_path):
    loader = new_loader("duckdb")
    loader.load(sms=demo_rows(5))
    report = ("report", "--database", str(loader.database), "--out", str(tmp_path / "r.html"))
    refused = run_cli(*report, api_key=None, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    (hinted,) = re.findall(r"`([^`]+)`", refused.stderr)
    # From another folder, where the default warehouse.duckdb would be another database.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = cli_env(None)
    ran = subprocess.run(hinted, shell=True, cwd=elsewhere, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, (hinted, ran.stderr)
    assert run_cli(*report, api_key=None, cwd=tmp_path).returncode == 0
    assert (tmp_path / "r.html").stat().st_size > 0
