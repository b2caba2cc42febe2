"""Rate limits as real Close sends them (README of the Close facts, sections 5 and 12).

Fixed windows, whole-second resets, groups by method with a lower POST limit, and the header
forms recorded over the years; each behind an EmulatorConfig switch, off by default.
"""

from __future__ import annotations

import re
import time

import pytest

from close_api_emulator import EmulatorConfig

OVERRIDE = {"x-http-method-override": "GET"}
HEADER = re.compile(r"^limit=(\d+), remaining=(\d+), reset=(\d+(?:\.\d+)?)$")
RATE_HEADER_NAMES = {
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-rate-limit-limit",
    "x-rate-limit-remaining",
    "x-rate-limit-reset",
}


def _fields(resp) -> tuple[int, int, float]:
    limit, remaining, reset = HEADER.match(resp.headers["ratelimit"]).groups()
    return int(limit), int(remaining), float(reset)


def _override(run, session, params=None):
    return session.post(
        f"{run.base_url}/activity/sms/",
        json={"_params": params or {"_limit": 1}},
        headers=OVERRIDE,
        timeout=10,
    )


def test_a_fixed_window_allows_rps_times_window_then_429_until_it_ends(emulator):
    run = emulator(sms=5, rps=3, ratelimit_window=1)
    session = run.session()
    url = run.base_url + "/activity/sms/"
    answers = [session.get(url, timeout=10) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [_fields(r)[:2] for r in answers] == [(3, 2), (3, 1), (3, 0), (3, 0)]
    limited = answers[-1]
    reset = _fields(limited)[2]
    assert 0 < reset <= 1 and limited.headers["retry-after"] == "1"
    assert limited.json()["rate_window"] == 1 and limited.json()["rate_limit"] == 3
    # The window, not a refill rate, decides: the next request after it gets a full window.
    time.sleep(reset + 0.05)
    fresh = session.get(url, timeout=10)
    assert fresh.status_code == 200 and _fields(fresh)[:2] == (3, 2)
    assert _fields(fresh)[2] > 0.9


@pytest.mark.parametrize(
    ("rounding", "first", "late"),
    [("floor", "2", "0"), ("ceil", "2", "1"), ("fraction", r"2\.000", r"0\.\d{3}")],
)
def test_reset_is_written_as_configured(emulator, rounding, first, late):
    # A fresh window reads the whole window, as a fresh /me/ window read reset=8 in 2025.
    run = emulator(sms=5, rps=5, ratelimit_window=2, ratelimit_reset_rounding=rounding)
    session = run.session()
    reset = HEADER.match(session.get(run.base_url + "/me/", timeout=10).headers["ratelimit"])
    assert re.fullmatch(first, reset.group(3)), reset.group(3)
    time.sleep(1.2)  # the last second of the window
    reset = HEADER.match(session.get(run.base_url + "/me/", timeout=10).headers["ratelimit"])
    assert re.fullmatch(late, reset.group(3)), reset.group(3)


def test_a_429_in_the_last_second_still_says_retry_after_1(emulator):
    run = emulator(sms=5, rps=1, ratelimit_window=2, ratelimit_reset_rounding="floor")
    session = run.session()
    assert [session.get(run.base_url + "/me/", timeout=10).status_code for _ in range(2)] == [
        200,
        200,
    ]
    time.sleep(1.1)
    limited = session.get(run.base_url + "/me/", timeout=10)
    assert limited.status_code == 429
    assert limited.headers["ratelimit"].endswith("reset=0")
    assert limited.headers["retry-after"] == "1"


def test_grouped_by_method_the_override_post_has_its_own_lower_limit(emulator):
    run = emulator(
        sms=5,
        rps=10,
        ratelimit_window=2,
        ratelimit_group_by_method=True,
        ratelimit_override_share=0.1,
    )
    session = run.session()
    posts = [_override(run, session) for _ in range(3)]
    assert [r.status_code for r in posts] == [200, 200, 429]
    assert [_fields(r)[:2] for r in posts[:2]] == [(2, 1), (2, 0)]
    got = session.get(run.base_url + "/activity/sms/", timeout=10)
    assert got.status_code == 200 and _fields(got)[:2] == (20, 19)


def test_by_default_the_override_post_counts_in_the_get_group(emulator):
    run = emulator(sms=5, rps=10, ratelimit_window=2)
    session = run.session()
    assert _fields(_override(run, session))[:2] == (20, 19)
    assert _fields(session.get(run.base_url + "/activity/sms/", timeout=10))[:2] == (20, 18)


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        (
            "x-rate-limit",
            {
                "x-rate-limit-limit": r"4",
                "x-rate-limit-remaining": r"3",
                "x-rate-limit-reset": r"[12]\.\d{3}",
            },
        ),
        (
            "ratelimit-separate",
            {
                "ratelimit-limit": r"4",
                "ratelimit-remaining": r"3",
                "ratelimit-reset": r"[12]\.\d{3}",
            },
        ),
        (
            "ietf",
            {"ratelimit": r'"default";r=3;t=2', "ratelimit-policy": r'"default";q=4;w=2'},
        ),
        ("ratelimit", {"ratelimit": r"limit=4, remaining=3, reset=[12]\.\d{3}"}),
        ("none", {}),
    ],
)
def test_header_forms(emulator, form, expected):
    run = emulator(sms=5, rps=2, ratelimit_window=2, ratelimit_header_form=form)
    session = run.session()
    answers = [session.get(run.base_url + "/activity/sms/", timeout=10) for _ in range(5)]
    assert [r.status_code for r in answers] == [200] * 4 + [429]
    first = {k.lower(): v for k, v in answers[0].headers.items()}
    assert set(first) & RATE_HEADER_NAMES == set(expected)
    for name, pattern in expected.items():
        assert re.fullmatch(pattern, first[name]), (name, first[name])
    limited = answers[-1]
    assert limited.headers["retry-after"] in ("1", "2")
    assert {k.lower() for k in limited.headers} & RATE_HEADER_NAMES == set(expected)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rps": 2, "ratelimit_window": 0.5}, "ratelimit_window must be 1 to 15"),
        ({"rps": 2, "ratelimit_window": 16}, "ratelimit_window must be 1 to 15"),
        ({"ratelimit_window": 2}, "ratelimit_window needs rps"),
        ({"rps": 0.1, "ratelimit_window": 2}, "at least one request"),
        ({"ratelimit_reset_rounding": "round"}, "ratelimit_reset_rounding must be one of"),
        ({"ratelimit_header_form": "RateLimit"}, "ratelimit_header_form must be one of"),
        ({"ratelimit_override_share": 0.1}, "needs ratelimit_group_by_method"),
        (
            {"ratelimit_group_by_method": True, "ratelimit_override_share": 0},
            "ratelimit_override_share must be above 0",
        ),
    ],
)
def test_bad_rate_limit_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        EmulatorConfig(**settings)
