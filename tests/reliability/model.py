"""A seeded, model-based randomized run: API changes, faults and (killed) sync processes.

The emulator is the model of Close: after every completed sync the warehouse must equal
`emu.snapshot()` field by field (`tests.support.mismatches`). Each scenario applies random
API changes, arms random faults, may SIGKILL one or two sync processes at a chosen moment
(extract, normalize, load, or the view step, recognised from dlt's INFO log lines on stderr),
then runs a sync to completion and compares (SMS changed while that sync ran are checked after
the next one). Each account ends with one more sync while the emulator's clock is stopped,
compared with no exclusions at all. Each account draws from its own
`random.Random(f"{seed}/{account}")`, so one account of a run is replayed alone
(`run(..., accounts=[n])`); a mismatch is logged with the SMS's changes, events and sync state.

Each account is Close as recorded, not as documented: rate limits in fixed windows of 1-15 s
with whole-second resets, one of the header forms, and (for some) groups by method with a lower
POST-override limit; recorded and undeclared fields; hostile texts (NUL bytes, empty) that a
DuckDB warehouse keeps exactly; lead merges logged with every event or the lead events only.
Its API changes include SMS Close deleted but still lists (every list page holding one answers
404 "Empty query" forever: an exit 4 naming it is a failure, as the sync must step past it),
SMS the key may not read (403), and changes to leads (created, too), contacts, lead statuses,
users, templates and numbers. It serves the context as Close documents it or not, and faults
may fail one context table's read (`context_model.py`): such a run exits 9, its SMS must equal
Close all the same, and a rerun with no fault reads the tables.

What "equal to Close" means for what the sync cannot see:
- an SMS forbidden (403) keeps, in the warehouse, exactly the row it had when it was forbidden
  (or stays absent): it is compared with that row, never with Close's, until Close deletes it;
- Close logs no SMS event and moves no `date_updated` when a user is renamed, yet renders the
  new name in `user_name` (and `created_by_name`, `updated_by_name`): an SMS may hold any name
  its user has had.
The context tables (users, statuses, templates, numbers, leads, contacts) are compared with the
emulator's account after every completed sync, like the SMS. The model's syncs read the small
tables on every run (`SOURCES__CLOSE_SMS__CONTEXT_REFRESH_MINUTES=0`), since renames of users,
templates and numbers have no events; the leads and contacts expected are those the SMS as
the warehouse must hold them name; a lead or contact no SMS names any more may stay if it
equals Close's (the sync keeps such rows current: `test_unnamed_context_rows.py`).
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from close_api_emulator import DEMO_API_KEY, Emulator, EmulatorConfig, EmulatorServer
from close_api_emulator.crm import InvalidUpdate, UnknownObject
from close_api_emulator.errors import ValidationError
from close_api_emulator.ratelimit import HEADER_FORMS
from close_sms.errors import EXIT_CONTEXT_FAILED, ApiContractError
from close_sms.source.api.client import EMPTY_QUERY
from close_sms.source.timestamps import parse_timestamp
from tests import cli_process
from tests.reliability.context_model import (
    CONTEXT_CHANGES,
    CONTEXT_SWITCHES,
    arm_context_fault,
    context_change,
    context_config,
)
from tests.reliability.counts import Counts
from tests.reliability.helpers import status
from tests.reliability.sms_model import SMS_CHANGES, sms_change
from tests.support import cli_command, cli_env, context_mismatches, mismatches, warehouse_rows

# A kill lands in the phase of the last stderr line seen; dlt logs at INFO name their module.
PHASE_MARKERS = {
    "extract": ("Backfill:", "Resuming backfill", "Reconcile:", "Change feed:"),
    "normalize": ("|normalize.py|", "|worker.py|"),
    "load": ("|load.py|", "|job_client_impl.py|", "|utils.py|"),
    "views": ("archiving package",),
}
KILL_TARGETS = ("delay", "extract", "normalize", "load", "views")
CHANGES = {**SMS_CHANGES, **CONTEXT_CHANGES}
BETWEEN_SYNCS_ONLY = frozenset({"forbid_sms"})
# The SMS fields that render a user's name, by the field holding the user's id.
USER_NAME_FIELDS = (
    ("user_id", "user_name"),
    ("created_by", "created_by_name"),
    ("updated_by", "updated_by_name"),
)


def account_config(rng: random.Random) -> EmulatorConfig:
    """Close as one account meets it: recorded rate limits (generous, so the run stays fast),
    fields and texts, how its lead merges are logged, and how it serves the context."""
    limits: dict[str, Any] = {}
    if rng.random() < 0.7:
        by_method = rng.random() < 0.5
        limits = {
            "rps": rng.choice([40.0, 80.0, 200.0]),
            "ratelimit_window": rng.randint(1, 15),
            "ratelimit_reset_rounding": rng.choice(["floor", "ceil"]),
            "ratelimit_header_form": rng.choice(HEADER_FORMS),
            "ratelimit_group_by_method": by_method,
            "ratelimit_override_share": rng.choice([0.1, 0.25, 1.0]) if by_method else 1.0,
        }
    return EmulatorConfig(
        max_skip=rng.choice([300, 500]) if rng.random() < 0.3 else 250_000,
        merge_events=rng.choice(["all", "lead_only"]),
        recorded_sms_fields=rng.random() < 0.5,
        recorded_sources=rng.random() < 0.3,
        undeclared_fields=rng.choice([0, 0, 1, 4]),
        hostile_texts=rng.random() < 0.5,
        **limits,
        **context_config(rng),
    )


class Scenario:
    """One emulated account and one database, driven through random steps."""

    def __init__(self, rng: random.Random, workdir: Path, counts: Counts, log: Any) -> None:
        self.rng = rng
        self.counts = counts
        self.log = log
        config = account_config(rng)
        self.emu = Emulator(config)
        self.emu.generate(n=rng.randint(200, 1200), seed=rng.randint(1, 10_000))
        self.server = EmulatorServer(self.emu).start()
        self.database = workdir / "warehouse.duckdb"
        self.env = {
            "SOURCES__CLOSE_SMS__BACKFILL_CHUNK_SIZE": str(rng.choice([150, 250, 400, 5000])),
            "SOURCES__CLOSE_SMS__BACKFILL_WORKERS": str(rng.choice([1, 2, 4])),
            "SOURCES__CLOSE_SMS__MAX_RETRIES": "6",
            "SOURCES__CLOSE_SMS__READ_TIMEOUT": "1.5",
            "SOURCES__CLOSE_SMS__BACKOFF_MAX": "0.2",
            # Renames of users, templates and numbers have no events: read them every run.
            "SOURCES__CLOSE_SMS__CONTEXT_REFRESH_MINUTES": "0",
            # The sync is not told the emulator's low max_skip: it meets the 400 and recovers.
            "RUNTIME__LOG_LEVEL": "INFO",
        }
        self.args = ("sync", "--base-url", self.server.base_url, "--database", str(self.database))
        recorded = ("merge_events", "undeclared_fields", "hostile_texts", "recorded_sms_fields")
        recorded += CONTEXT_SWITCHES
        limits = ("rps", "ratelimit_window", "ratelimit_reset_rounding", "ratelimit_header_form")
        limits += ("ratelimit_group_by_method", "ratelimit_override_share")
        log(
            f"  account: {len(self.emu.snapshot())} SMS, max_skip {config.max_skip}, "
            + ", ".join(f"{k.split('__')[-1].lower()}={v}" for k, v in self.env.items())
            + "".join(f", {name}={getattr(config, name)}" for name in recorded)
            + (
                ", limits " + " ".join(str(getattr(config, n)) for n in limits)
                if config.rps
                else ""
            )
        )
        self.last_seconds = 4.0
        self.force_kill_at = -1
        self.runs = 0
        self.history: dict[str, list[str]] = {}
        self.sync_began = self.emu.clock.now()
        self.synced = False
        # Forbidden SMS: the row the warehouse held when each was forbidden (None: none).
        self.forbidden: dict[str, dict[str, Any] | None] = {}
        # Every name each renamed user has had.
        self.user_names: dict[str, set[str]] = {}
        some = next(iter(self.emu.snapshot().values()))
        self.template = {
            "lead_id": some["lead_id"],
            "contact_id": some["contact_id"],
            "remote_phone": some["remote_phone"],
            "local_phone": some["local_phone"] or "+16505550100",
        }

    def close(self) -> None:
        self.server.stop()

    # ---- API changes --------------------------------------------------------------------

    def change(self, touched: set[str] | None = None) -> None:
        """One random API change; ids it touches (SMS and context objects) are added to
        `touched`, which is None between syncs."""
        rng = self.rng
        kinds = [k for k in CHANGES if touched is None or k not in BETWEEN_SYNCS_ONLY]
        kind = rng.choices(kinds, weights=[CHANGES[k] for k in kinds])[0]
        snapshot = self.emu.snapshot()
        try:
            ids = (
                context_change(self, kind, snapshot)
                if kind in CONTEXT_CHANGES
                else sms_change(self, kind, snapshot)
            )
        except (ValidationError, UnknownObject, InvalidUpdate) as exc:
            self.log(f"    change {kind} rejected by the emulator: {exc}")
            return
        if ids is None:
            return
        self.counts.api_changes[kind] += 1
        stamp = f"{kind} at {self.emu.clock.now().isoformat()} (step {self.counts.scenarios})"
        for object_id in ids:
            self.history.setdefault(object_id, []).append(stamp)
        if touched is not None:
            touched.update(ids)

    def forbid(self, sms_id: str) -> None:
        """Make one SMS unreadable (403), remembering the row the warehouse holds for it."""
        # Called between syncs only: nothing writes the warehouse, so this is the last load.
        self.forbidden[sms_id] = warehouse_rows(self.database).get(sms_id)
        self.emu.forbid_sms(sms_id)

    def rename_user(self, user_id: str, last_name: str) -> None:
        """Rename a user, remembering every name the user has had."""
        with self.emu.lock:
            user = self.emu.store.crm.users[user_id]
            names = self.user_names.setdefault(user_id, {user.name})
            self.emu.rename_user(user_id, "Renamed", last_name)
            names.add(user.name)

    # ---- faults ---------------------------------------------------------------------------

    def arm_faults(self) -> None:
        rng = self.rng
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            kind = rng.choice(
                [
                    "429",
                    "5xx",
                    "hang",
                    "slow",
                    "drop",
                    "truncate",
                    "malformed",
                    "html200",
                    "context",
                ]
            )
            if kind == "context":
                self.counts.faults_armed[kind] += 1
                self.log(f"    armed {arm_context_fault(rng, self.emu.faults)}")
                continue
            prefix = rng.choice([None, "/activity/sms/", "/event/", "/me/"])
            if kind == "429":
                self.emu.faults.add("429", rng.randint(3, 15), prefix, reset=rng.uniform(0.05, 0.3))
            elif kind == "5xx":
                self.emu.faults.add(rng.choice(["502", "503", "504"]), rng.randint(1, 5), prefix)
            elif kind == "hang":
                self.emu.faults.add("hang", rng.randint(1, 2), prefix, seconds=3.0)
            elif kind == "slow":
                self.emu.faults.add(
                    "slow", rng.randint(1, 4), prefix, seconds=rng.uniform(0.2, 1.0)
                )
            else:
                self.emu.faults.add(kind, rng.randint(1, 4), prefix)
            self.counts.faults_armed[kind] += 1
            self.log(f"    armed {kind} on {prefix or 'every path'}")

    # ---- sync processes ---------------------------------------------------------------------

    def _start_sync(self, stdout: int) -> subprocess.Popen[str]:
        """`close-sms sync` in a new process, as cron starts it; stderr is piped."""
        return cli_process.popen(
            cli_command(*self.args),
            env=cli_env(DEMO_API_KEY, **self.env),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )

    def killed_run(self, target: str | None = None) -> None:
        """Start a sync and SIGKILL it at a random moment of a random (or given) phase."""
        rng = self.rng
        target = target or rng.choice(KILL_TARGETS)
        delay = rng.uniform(0.2, max(0.5, self.last_seconds))
        nth = rng.randint(1, 6)
        process = self._start_sync(stdout=subprocess.DEVNULL)
        phase = "none"
        feed_started = False
        seen = 0
        killed = threading.Event()

        def kill() -> None:
            if process.poll() is None:
                # Set first: the timer's thread could otherwise be preempted between the
                # signal and the flag, and a run it killed read as one that died on its own.
                killed.set()
                process.send_signal(signal.SIGKILL)

        timer = None
        if target == "delay":
            timer = threading.Timer(delay, kill)
            timer.start()
        assert process.stderr is not None
        lines: list[str] = []
        for line in process.stderr:
            lines.append(line)
            feed_started = feed_started or "Change feed:" in line
            for name, markers in PHASE_MARKERS.items():
                if any(m in line for m in markers):
                    # A package archived before the change feed ends a backfill chunk, not the run.
                    phase = name if name != "views" or feed_started else "between chunks"
            if killed.is_set():
                break
            if target != "delay" and phase == target:
                seen += 1
                if target in ("extract", "views") or seen >= nth:
                    time.sleep(rng.uniform(0, 0.3 if target == "extract" else 0.05))
                    kill()
                    break
        if timer is not None:
            timer.cancel()
            timer.join()
        lines.append(process.stderr.read())
        process.wait(timeout=300)
        self._keep_log(f"killed {target}", "".join(lines))
        if killed.is_set() and process.returncode == -signal.SIGKILL:
            label = phase if target == "delay" else target
            self.counts.kills[label] += 1
            self.log(f"    killed in {label} (target {target})")
        elif process.returncode not in (0, 4, EXIT_CONTEXT_FAILED):
            self.counts.unexpected_failures.append(
                f"a run meant to be killed exited {process.returncode}"
            )

    def completed_run(self, overlap: bool, rerun: bool = False) -> set[str]:
        """Run a sync to completion (with API changes during it if `overlap`); returns the ids
        those concurrent changes touched. A `rerun` follows a stop, with no fault armed."""
        touched: set[str] = set()
        stop = threading.Event()

        def meddle() -> None:
            while not stop.wait(self.rng.uniform(0.1, 0.8)):
                with self.emu.lock:
                    self.change(touched)

        meddler = threading.Thread(target=meddle) if overlap else None
        began = time.monotonic()
        self.sync_began = self.emu.clock.now()
        process = self._start_sync(stdout=subprocess.PIPE)
        if meddler:
            meddler.start()
        _out, err = process.communicate(timeout=600)
        stop.set()
        if meddler:
            meddler.join()
        self.last_seconds = time.monotonic() - began
        self._keep_log(f"completed, exit {process.returncode}", err)
        if process.returncode == EXIT_CONTEXT_FAILED and not rerun:
            return touched | self._after_context_failure(err, touched)
        if process.returncode == 4:
            # Faults outlasted the retries: a clear stop is allowed; a clean rerun must succeed.
            self.counts.syncs_stopped_by_faults += 1
            last = err.strip().splitlines()[-1] if err.strip() else ""
            if not last.startswith("close-sms: error:"):
                self.counts.unexpected_failures.append(f"exit 4 without a clear message: {last}")
            elif EMPTY_QUERY in last:
                # A deleted SMS Close still lists must be stepped past, never stop the sync.
                self.counts.unexpected_failures.append(f"stopped by a still-listed SMS: {last}")
            elif ApiContractError.hint.strip() in last:
                # The emulator keeps every assumption the sync checks: a stop naming one is a
                # false alarm, not a fault outlasting the retries.
                self.counts.unexpected_failures.append(f"a check of Close's answers failed: {last}")
            if rerun:
                # No fault was armed: the stop would repeat on every rerun.
                self.counts.unexpected_failures.append(f"exit 4 without faults: {last}")
                self.log(f"    UNEXPECTED exit 4 without faults: {last}")
                return touched
            self.log(f"    stopped by faults: {last}")
            self.emu.faults.clear()
            return touched | self.completed_run(overlap=False, rerun=True)
        if process.returncode != 0:
            last = "\n".join(err.strip().splitlines()[-3:])
            self.counts.unexpected_failures.append(f"exit {process.returncode}: {last}")
            self.log(f"    UNEXPECTED exit {process.returncode}: {last}")
            if rerun:
                return touched
            self.emu.faults.clear()
            return touched | self.completed_run(overlap=False, rerun=True)
        self.counts.syncs_completed += 1
        self.synced = True
        if overlap:
            self.counts.overlapping_syncs += 1
        return touched

    def _after_context_failure(self, stderr: str, touched: set[str]) -> set[str]:
        """A run that loaded its SMS but not every context table (exit 9): its SMS must equal
        Close now, as after any completed run; then a rerun with no fault reads the tables."""
        self.counts.syncs_with_context_failed += 1
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        if not last.startswith("close-sms: error: the SMS are loaded"):
            self.counts.unexpected_failures.append(f"exit 9 without its one line: {last}")
        self.log(f"    context tables failed: {last}")
        self.synced = True
        snapshot = self.emu.snapshot()
        self.compare(
            snapshot, excluded=touched | self._changed_during_sync(snapshot), context=False
        )
        self.emu.faults.clear()
        return self.completed_run(overlap=False, rerun=True)

    def _changed_during_sync(self, snapshot: dict[str, dict[str, Any]]) -> set[str]:
        """SMS changed since the last sync began (by the API, or by a scheduled send coming
        due): the next sync may be the first to see them."""
        return {
            sms_id
            for sms_id, sms in snapshot.items()
            if parse_timestamp(sms["date_updated"]) >= self.sync_began
        }

    def _keep_log(self, label: str, stderr: str) -> None:
        """Keep each sync's stderr beside the database, for explaining a mismatch later."""
        self.runs += 1
        name = f"run{self.runs:03d}.log"
        (self.database.parent / name).write_text(stderr)
        self.log(f"    sync {name}: {label}")

    def explain(self, sms_id: str) -> str:
        """What is known of one mismatched SMS: its changes, events, rows and the sync state."""
        emu = self.emu
        lines = [f"    -- {sms_id}"]
        lines += [f"       change: {h}" for h in self.history.get(sms_id, ["none by the model"])]
        fields = ("status", "date_created", "date_updated", "activity_at", "date_scheduled")
        close = emu.snapshot().get(sms_id)
        lines.append(f"       close: {close and {f: close.get(f) for f in fields}}")
        stored = warehouse_rows(self.database).get(sms_id)
        lines.append(f"       warehouse: {stored and {f: stored.get(f) for f in fields}}")
        lines += [
            f"       event: {e['action']} created {e['date_created']} updated {e['date_updated']}"
            f" changed {e.get('changed_fields')}"
            for e in emu.events()
            if e.get("object_id") == sms_id
        ]
        lines.append(f"       sync state: {status(self.database)}")
        lines.append(f"       emulator now: {emu.clock.now().isoformat()}")
        return "\n".join(lines)

    def step(self, kill_chance: float, overlap_chance: float, horizon_chance: float) -> None:
        rng = self.rng
        armed_before = Counter(self.emu.faults.injected)
        for _ in range(rng.choice([0, 1, 2, 3, 5, 8])):
            self.change()
        if rng.random() < horizon_chance:
            self.emu.clock.advance(rng.uniform(31, 40) * 86400)
            self.counts.horizon_jumps += 1
            for _ in range(rng.randint(1, 4)):
                self.change()
        self.arm_faults()
        kills = 0
        if not sum(self.counts.kills.values()) and self.counts.scenarios == self.force_kill_at:
            self.killed_run("extract")  # so that even a short run has at least one kill
            kills += 1
        while rng.random() < kill_chance and kills < 2:
            self.killed_run()
            kills += 1
        before = self.emu.snapshot()
        touched = self.completed_run(overlap=rng.random() < overlap_chance)
        self.emu.faults.clear()
        self.counts.faults_injected.update(Counter(self.emu.faults.injected) - armed_before)
        snapshot = self.emu.snapshot()
        # Changes made while the sync ran may legitimately be caught by the next sync only;
        # the next step checks them.
        touched |= self._changed_during_sync(snapshot)
        self.counts.scenarios += 1
        # A lead or contact an SMS changed during the sync left or joined is caught next time.
        touched |= {
            sms[column]
            for sms_id in touched
            for sms in (before.get(sms_id), snapshot.get(sms_id))
            if sms
            for column in ("lead_id", "contact_id")
        }
        self.compare(snapshot, excluded=touched)

    def final_check(self) -> None:
        """One more sync with the clock stopped, so nothing changes during it: exact equality."""
        self.emu.faults.clear()
        self.emu.clock.freeze()
        try:
            self.completed_run(overlap=False)
            self.counts.final_checks += 1
            self.compare(self.emu.snapshot(), excluded=set())
        finally:
            self.emu.clock.unfreeze()

    def compare(
        self, snapshot: dict[str, dict[str, Any]], excluded: set[str], context: bool = True
    ) -> None:
        """The warehouse against Close, leaving out the ids in `excluded` (SMS and context
        objects changed while the sync ran); the context tables too unless `context` is off."""
        self.forbidden = {i: row for i, row in self.forbidden.items() if i in snapshot}
        stored = warehouse_rows(self.database)
        readable = {
            sms_id: self._as_last_read(sms, stored.get(sms_id))
            for sms_id, sms in snapshot.items()
            if sms_id not in self.forbidden
        }
        problems = [
            p
            for p in mismatches(self.database, readable)
            if _problem_id(p) not in excluded and _problem_id(p) not in self.forbidden
        ]
        problems += [
            f"{sms_id}: forbidden, yet {_changes(row, stored.get(sms_id))}"
            for sms_id, row in self.forbidden.items()
            if stored.get(sms_id) != row
        ]
        # The leads and contacts due are those the SMS the warehouse must hold name.
        held = readable | {i: row for i, row in self.forbidden.items() if row is not None}
        found = [
            p
            for p in context_mismatches(self.database, self.emu, held, allow_unnamed=True)
            if _context_problem_id(p) not in excluded
        ]
        self._count_mismatches(problems, found if context else [])

    def _count_mismatches(self, problems: list[str], context: list[str]) -> None:
        """Count and log the differences found, with what is known of their objects."""
        if not (problems or context):
            return
        self.counts.mismatches += len(problems) + len(context)
        self.counts.context_mismatches += len(context)
        self.counts.mismatch_samples.extend([*problems[:5], *context[:5]])
        self.log(f"    MISMATCHES: {len(problems)}: {problems[:5]}")
        if context:
            self.log(f"    CONTEXT MISMATCHES: {len(context)}: {context[:10]}")
        for object_id in sorted({_problem_id(p) for p in problems})[:3]:
            self.log(self.explain(object_id))
        for object_id in sorted({_context_problem_id(p) for p in context})[:3]:
            history = self.history.get(object_id, ["none by the model"])
            self.log(f"    -- {object_id}: " + "; ".join(history))

    def _as_last_read(self, sms: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
        """Close's SMS, with each user name the warehouse holds that its user has had: a rename
        changes Close's rendering without an event or a new `date_updated`."""
        if stored is None:
            return sms
        last_read = dict(sms)
        for id_field, name_field in USER_NAME_FIELDS:
            names = self.user_names.get(sms.get(id_field) or "", set())
            if stored[name_field] in names:
                last_read[name_field] = stored[name_field]
        return last_read


def _changes(expected: dict[str, Any] | None, actual: dict[str, Any] | None) -> str:
    """How a forbidden SMS's warehouse row differs from the one it had when forbidden."""
    if expected is None:
        return "loaded"
    if actual is None:
        return "removed"
    return "changed " + ", ".join(k for k in expected if expected[k] != actual.get(k))


def _context_problem_id(problem: str) -> str:
    """The object id of a `context_mismatches` line ("leads: extra lead_x", "leads lead_x.name: ...")."""
    table, rest = problem.split(" ", 1)
    if table.endswith(":"):
        return rest.split(" ", 1)[1]
    return rest.split(".", 1)[0]


def _problem_id(problem: str) -> str:
    text = problem.split(" ", 1)[1] if problem.startswith(("missing ", "extra ")) else problem
    return text.split(".", 1)[0].split(":", 1)[0]


def run(
    seed: int,
    episodes: int,
    steps: int,
    workdir: Path,
    log: Any = print,
    kill_chance: float = 0.35,
    overlap_chance: float = 0.2,
    horizon_chance: float = 0.04,
    accounts: list[int] | None = None,
) -> Counts:
    """`episodes` fresh accounts (or just `accounts`) of `steps` scenarios each."""
    counts = Counts(seed=seed)
    log(f"reliability run: seed {seed}, {episodes} accounts x {steps} scenarios")
    for episode in accounts if accounts is not None else range(episodes):
        folder = workdir / f"account{episode}"
        folder.mkdir(parents=True)
        rng = random.Random(f"{seed}/{episode}")
        scenario = Scenario(rng, folder, counts, log)
        scenario.force_kill_at = steps - 1
        counts.episodes += 1
        try:
            for step in range(steps):
                log(f"  account {episode} scenario {step}")
                scenario.step(kill_chance, overlap_chance, horizon_chance)
            log(f"  account {episode} final check")
            scenario.final_check()
        finally:
            scenario.close()
    return counts
