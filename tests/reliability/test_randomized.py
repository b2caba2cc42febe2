"""The model-based randomized test: the warehouse equals Close after every completed sync.

Short version in the default run; the long one (>= 200 scenarios) with
`pytest -m long tests/reliability -s`. Both print their seed and counts; replay a seed with
RELIABILITY_SEED=<seed>, and only some of its accounts with RELIABILITY_ACCOUNTS=3,12.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.reliability.model import Counts, Scenario, run
from tests.support import Target


def _seed(default: int | None = None) -> int:
    """RELIABILITY_SEED, else `default`, else a fresh random seed ("random" forces one)."""
    value = os.environ.get("RELIABILITY_SEED", "")
    if value and value != "random":
        return int(value)
    if default is not None and value != "random":
        return default
    return random.SystemRandom().randrange(1 << 30)


def _live_log(capsys):
    """Print scenario lines as they happen, past pytest's capture (a long run takes minutes)."""

    def log(message: str) -> None:
        with capsys.disabled():
            print(message, flush=True)

    return log


def _check(counts: Counts, min_scenarios: int) -> None:
    print(counts.summary())
    replay = f"replay with RELIABILITY_SEED={counts.seed}"
    assert counts.scenarios >= min_scenarios
    assert counts.final_checks == counts.episodes
    assert counts.unexpected_failures == [], (replay, counts.unexpected_failures)
    assert counts.mismatches == 0, (replay, counts.mismatch_samples)
    assert sum(counts.api_changes.values()) > 0
    assert sum(counts.faults_injected.values()) > 0


@pytest.mark.slow
def test_randomized_short(tmp_path, capsys):
    # CI runs a fixed seed so that it is repeatable; RELIABILITY_SEED=random (or a number)
    # explores. Seed 11's account is small and has recorded rate limits (9 s windows, groups
    # by method), undeclared and recorded fields, and merges logged with the lead events only.
    seed = _seed(default=11)
    with capsys.disabled():
        print(f"\nrandomized short run, seed {seed}")
    counts = run(seed, episodes=1, steps=5, workdir=tmp_path, kill_chance=0.5)
    with capsys.disabled():
        print()
        _check(counts, min_scenarios=5)
    assert sum(counts.kills.values()) >= 1


@pytest.mark.slow
def test_the_model_holds_a_forbidden_sms_to_its_last_loaded_row(tmp_path):
    """What the sync cannot see is compared as precisely as it can be: a 403 SMS with the row it
    had when forbidden, an SMS of a renamed user with any name the user has had."""
    counts = Counts()
    scenario = Scenario(random.Random("forbidden-6"), tmp_path, counts, log=lambda message: None)
    try:
        scenario.completed_run(overlap=False)
        some = sorted(scenario.emu.snapshot().values(), key=lambda sms: sms["id"])
        hidden = some[0]["id"]
        scenario.forbid(hidden)
        scenario.emu.override_raw(hidden, {"text": "changed, unseen"}, emit_update=True)
        scenario.rename_user(next(s["user_id"] for s in some if s["user_id"]), "Renamed")
        scenario.completed_run(overlap=False)

        scenario.compare(scenario.emu.snapshot(), excluded=set())
        assert counts.mismatches == 0, counts.mismatch_samples

        Target.duckdb(scenario.database).execute(
            f"UPDATE close_sms.sms SET text = 'tampered' WHERE id = '{hidden}'"
        )
        scenario.compare(scenario.emu.snapshot(), excluded=set())
        assert counts.mismatch_samples == [f"{hidden}: forbidden, yet changed text"]
    finally:
        scenario.close()


@pytest.mark.long
def test_randomized_long(tmp_path, capsys):
    seed = _seed()
    episodes = int(os.environ.get("RELIABILITY_EPISODES", "20"))
    steps = int(os.environ.get("RELIABILITY_STEPS", "10"))
    # RELIABILITY_ACCOUNTS=3,12 replays only those accounts of the seed's run.
    chosen = os.environ.get("RELIABILITY_ACCOUNTS")
    accounts = [int(a) for a in chosen.split(",")] if chosen else None
    planned = len(accounts or range(episodes)) * steps
    with capsys.disabled():
        print(f"\nrandomized long run, seed {seed}", flush=True)
    counts = run(
        seed,
        episodes=episodes,
        steps=steps,
        workdir=tmp_path,
        log=_live_log(capsys),
        accounts=accounts,
    )
    with capsys.disabled():
        print()
        _check(counts, min_scenarios=planned)
    assert sum(counts.kills.values()) > 0
    assert counts.horizon_jumps > 0 or planned < 100
