"""The report's figures at the sizes that misled: no finer ticks than the data, no fractional
counts, units that fit the values, no series hidden behind another. The figures are drawn from
rows here, as the report draws them from its queries (tests/app/test_report.py reads those)."""

from __future__ import annotations

import datetime as dt

import plotly.graph_objects as go
import pytest

from close_sms.app.report.figures import (
    daily_volume_figure,
    delivery_figure,
    duration,
    opt_outs_figure,
    senders_figure,
    sync_health_figure,
)
from close_sms.app.report.ranked import templates_figure, users_figure


def _runs(days: int, lag_seconds: float, runs: int) -> list[dict]:
    first = dt.date(2026, 1, 1)
    return [
        {
            "run_date": (first + dt.timedelta(days=n)).isoformat(),
            "successful_runs": runs,
            "failed_runs": n % 2,
            "other_runs": 0,
            "max_lag_seconds": lag_seconds * (1 + n % 3),
            "last_error": None,
        }
        for n in range(days)
    ]


def test_a_day_of_runs_has_whole_runs_and_its_lag_in_seconds_drawn_over_the_bars():
    # One day, two quick runs: the lag axis read 0.00803 minutes, the runs axis 0.5 runs.
    figure = sync_health_figure(go.Figure(), _runs(days=1, lag_seconds=0.48, runs=2))
    layout = figure.layout
    assert (layout.yaxis.tickformat, layout.yaxis.dtick) == (",d", 1)
    assert layout.yaxis2.title.text == "max lag (seconds)"
    (lag,) = [trace for trace in figure.data if trace.type == "scatter"]
    assert lag.y == (pytest.approx(0.48),)
    assert lag.customdata[0][0] == "0.5 s"
    # Drawn after the bars (so over them), in a colour no bar has.
    assert figure.data[-1] is lag
    assert lag.marker.color not in {trace.marker.color for trace in figure.data[:-1]}
    # The lag axis draws no grid of its own across the runs' grid.
    assert layout.yaxis2.showgrid is False


def test_a_year_of_runs_gives_its_lag_in_hours_and_leaves_the_run_ticks_to_plotly():
    figure = sync_health_figure(go.Figure(), _runs(days=365, lag_seconds=3 * 3600, runs=288))
    assert figure.layout.yaxis2.title.text == "max lag (hours)"
    assert figure.layout.yaxis.dtick is None and figure.layout.yaxis.tickformat == ",d"
    (lag,) = [trace for trace in figure.data if trace.type == "scatter"]
    assert max(lag.y) == pytest.approx(9.0)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.48, "0.5 s"), (42, "42 s"), (90, "1.5 min"), (5400, "1.5 h"), (3 * 86400, "3.0 days")],
)
def test_durations_read_as_people_read_them(seconds, shown):
    assert duration(seconds) == shown


def test_counts_are_whole_at_every_size():
    one_day = [{"message_date": "2026-01-01", "direction": "inbound", "message_count": 3}]
    a_year = [
        {"message_date": (dt.date(2026, 1, 1) + dt.timedelta(days=n)).isoformat()}
        | {"direction": direction, "message_count": 40 + n % 7}
        for n in range(365)
        for direction in ("inbound", "outbound")
    ]
    for rows, dtick in ((one_day, 1), (a_year, None), ([], 1)):
        axis = daily_volume_figure(go.Figure(), rows).layout.yaxis
        assert (axis.tickformat, axis.dtick, axis.rangemode) == (",d", dtick, "tozero")

    opt_outs = [
        {"opt_out_date": "2026-01-01"}
        | {"opt_out_count": 2, "texted_after_count": 1, "refused_after_count": 1}
    ]
    figure = opt_outs_figure(go.Figure(), opt_outs, {"inbound_count": 9, "readable_count": 9})
    assert (figure.layout.yaxis.tickformat, figure.layout.yaxis.dtick) == (",d", 1)
    # The texted ones overlap each other: side by side, none drawn over another.
    assert figure.layout.barmode == "group"
    assert [trace.name for trace in figure.data] == [
        "opt-outs",
        "texted after it, delivered",
        "texted after it, refused by the carrier",
    ]


def test_the_senders_bars_count_whole_sms_per_day():
    rows = [
        {
            "message_date": "2026-01-01",
            "sender_kind": kind,
            "outbound_count": 1,
            "sent_count": 1,
            "failed_count": 0,
            "replied_count": 1,
            "total_cost_cents": 1,
            "reply_rate": 1.0,
            "median_reply_seconds": 60.0,
            "failure_rate": 0.0,
        }
        for kind in ("ai_agent", "sequence", "rep")
    ]
    figure = senders_figure(go.Figure(), rows)
    assert (figure.layout.yaxis.tickformat, figure.layout.yaxis.dtick) == (",d", 1)
    # Close's AI agent, sequences and reps, each drawn: the title names all three.
    names = {trace.name for trace in figure.data}
    assert {"AI agent: SMS sent", "sequence: SMS sent", "rep: SMS sent"} <= names


def _template(n: int) -> dict:
    return {
        "template_id": f"tmpl_{n}",
        "template_name": f"Template {n}",
        "sent_count": 40 - n,
        "failed_count": n % 3,
        "reply_rate": 0.5,
        "median_reply_seconds": 600.0,
        "failure_rate": 0.1,
    }


@pytest.mark.parametrize(("shown", "says"), [(0, "top 10"), (4, "all 4"), (10, "top 10")])
def test_a_ranked_panel_says_how_many_it_shows(shown, says):
    rows = [_template(n) for n in range(shown)]
    assert (
        f"SMS templates ({says} by outbound SMS)"
        in templates_figure(go.Figure(), rows).layout.title.text
    )
    users = [
        {"user_id": f"user_{n}", "user_name": f"Rep {n}", "sent_count": 9 - n, "received_count": n}
        for n in range(shown)
    ]
    figure = users_figure(go.Figure(), users)
    assert f"Busiest users ({says}," in figure.layout.title.text
    # The legend lists the series in the order of the stacked bars.
    assert figure.layout.legend.traceorder == "normal"


def test_the_count_and_rate_axes_of_a_ranked_panel_share_their_zero():
    layout = templates_figure(go.Figure(), [_template(n) for n in range(6)]).layout
    count_low, count_high = layout.xaxis.range
    rate_low, rate_high = layout.xaxis2.range
    # Where 0 falls, as a share of the panel's width, on each axis.
    assert -count_low / (count_high - count_low) == pytest.approx(
        -rate_low / (rate_high - rate_low)
    )
    assert count_high >= 40 and layout.xaxis.tickformat == ",d"


def test_a_senders_title_names_the_kinds_drawn_and_those_without_sms():
    rows = [
        {
            "message_date": "2026-01-01",
            "sender_kind": kind,
            "outbound_count": 3,
            "sent_count": 3,
            "failed_count": 0,
            "replied_count": 1,
            "total_cost_cents": 3,
            "reply_rate": 1 / 3,
            "median_reply_seconds": 60.0,
            "failure_rate": 0.0,
        }
        for kind in ("sequence", "rep")
    ]
    title = senders_figure(go.Figure(), rows).layout.title.text
    assert title.startswith("Outbound SMS by sender: sequences and reps (none by Close's AI agent)")
    # The rate axis ticks on its own round values, without a grid of its own.
    axis = senders_figure(go.Figure(), rows).layout.yaxis2
    assert (axis.tickmode, axis.showgrid) == ("auto", False)


def test_a_year_of_opt_outs_is_drawn_per_week_and_says_so():
    first = dt.date(2026, 1, 5)  # a Monday
    rows = [
        {"opt_out_date": (first + dt.timedelta(days=n)).isoformat()}
        | {"opt_out_count": 1, "texted_after_count": n % 2, "refused_after_count": 0}
        | {"sent_after_count": n % 2}
        for n in range(364)
    ]
    figure = opt_outs_figure(go.Figure(), rows, {"inbound_count": 9, "readable_count": 9})
    assert figure.layout.title.text.startswith("Opt-outs per week")
    (opt_outs, delivered, _) = figure.data
    assert len(opt_outs.x) == 52 and set(opt_outs.y) == {7}
    assert sum(delivered.y) == 182


def test_a_long_history_of_senders_is_summed_per_week_with_its_rates():
    first = dt.date(2026, 1, 5)  # a Monday
    rows = [
        {
            "message_date": (first + dt.timedelta(days=n)).isoformat(),
            "sender_kind": kind,
            "outbound_count": 2,
            "sent_count": 2,
            "failed_count": 0,
            "replied_count": 1,
            "total_cost_cents": 2,
            "reply_rate": 0.5,
            "median_reply_seconds": 60.0,
            "failure_rate": 0.0,
        }
        for n in range(70)
        for kind in ("rep", "sequence")
    ]
    figure = senders_figure(go.Figure(), rows)
    assert figure.layout.xaxis.title.text == "week (from Monday)"
    bars = [trace for trace in figure.data if trace.type == "bar"]
    rates = [trace for trace in figure.data if trace.type == "scatter"]
    assert [len(trace.x) for trace in bars] == [10, 10]
    assert {y for trace in bars for y in trace.y} == {14}
    assert {y for trace in rates for y in trace.y} == {0.5}


def _delivery_days(days: int) -> list[dict]:
    first = dt.date(2026, 1, 5)  # a Monday
    return [
        {"message_date": (first + dt.timedelta(days=n)).isoformat()}
        | {"outbound_count": 12, "sent_count": 12 - n % 3, "failed_count": n % 3}
        | {"failure_rate": (n % 3) / 12, "top_error_message": "Message blocked by carrier."}
        for n in range(days)
    ]


def test_a_year_of_failure_rates_is_drawn_per_week_of_summed_counts():
    figure = delivery_figure(go.Figure(), _delivery_days(364))
    (rates,) = figure.data
    assert figure.layout.title.text.startswith("Outbound delivery failure rate per week")
    assert figure.layout.xaxis.title.text == "week (from Monday)"
    # 52 weeks, each the failed of its 84 sends (a day's rate jumps between 0 and 17%).
    assert len(rates.x) == 52 and rates.x[0] == "2026-01-05"
    failed_per_week = [sum(n % 3 for n in range(week * 7, week * 7 + 7)) for week in range(52)]
    assert list(rates.y) == pytest.approx([failed / 84 for failed in failed_per_week])
    # A top error does not add up over days: weeks name none.
    assert "top error" not in rates.hovertemplate


def test_a_month_of_failure_rates_stays_daily_with_its_top_errors():
    figure = delivery_figure(go.Figure(), _delivery_days(20))
    (rates,) = figure.data
    assert figure.layout.xaxis.title.text == "day" and len(rates.x) == 20
    assert "top error" in rates.hovertemplate
    assert rates.customdata[0][2] == "Message blocked by carrier."
