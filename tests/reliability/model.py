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
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from close_sms.emulator import DEMO_API_KEY, Emulator, EmulatorConfig, EmulatorServer
from close_sms.emulator.store import ValidationError
from close_sms.errors import ApiContractError
from close_sms.source.timestamps import parse_timestamp
from tests.reliability.helpers import status
from tests.support import cli_command, cli_env, mismatches, warehouse_rows

ATTACHMENT_TYPES = ("image/png", "image/jpeg", "application/pdf", "video/mp4", "text/vcard")
# A kill lands in the phase of the last stderr line seen; dlt logs at INFO name their module.
PHASE_MARKERS = {
    "extract": ("Backfill:", "Resuming backfill", "Reconcile:", "Change feed:"),
    "normalize": ("|normalize.py|", "|worker.py|"),
    "load": ("|load.py|", "|job_client_impl.py|", "|utils.py|"),
    "views": ("archiving package",),
}
KILL_TARGETS = ("delay", "extract", "normalize", "load", "views")


@dataclass
class Counts:
    """What a run did; printed at the end and asserted on."""

    seed: int = 0
    scenarios: int = 0
    episodes: int = 0
    api_changes: Counter[str] = field(default_factory=Counter)
    faults_armed: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    syncs_completed: int = 0
    syncs_stopped_by_faults: int = 0
    overlapping_syncs: int = 0
    horizon_jumps: int = 0
    final_checks: int = 0
    mismatches: int = 0
    unexpected_failures: list[str] = field(default_factory=list)
    mismatch_samples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The printed report."""
        return "\n".join(
            [
                f"reliability run, seed {self.seed}",
                f"  scenarios run:        {self.scenarios} (in {self.episodes} emulated accounts)",
                f"  API changes made:     {sum(self.api_changes.values())} {dict(self.api_changes)}",
                f"  faults injected:      {sum(self.faults_injected.values())} "
                f"{dict(self.faults_injected)} (armed {sum(self.faults_armed.values())})",
                f"  kills (SIGKILL):      {sum(self.kills.values())} {dict(self.kills)}",
                f"  syncs completed:      {self.syncs_completed} "
                f"({self.overlapping_syncs} with API changes during the run)",
                f"  syncs stopped by faults (exit 4, then rerun): {self.syncs_stopped_by_faults}",
                f"  horizon jumps (>30 days): {self.horizon_jumps}",
                f"  final exact checks (clock stopped, no exclusions): {self.final_checks}",
                f"  unexpected failures:  {len(self.unexpected_failures)}",
                f"  mismatches:           {self.mismatches}",
            ]
        )


class Scenario:
    """One emulated account and one database, driven through random steps."""

    def __init__(self, rng: random.Random, workdir: Path, counts: Counts, log: Any) -> None:
        self.rng = rng
        self.counts = counts
        self.log = log
        low_skip = rng.random() < 0.3
        config = EmulatorConfig(max_skip=rng.choice([300, 500]) if low_skip else 250_000)
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
            # The sync is not told the emulator's low max_skip: it meets the 400 and recovers.
            "RUNTIME__LOG_LEVEL": "INFO",
        }
        self.args = ("sync", "--base-url", self.server.base_url, "--database", str(self.database))
        log(
            f"  account: {len(self.emu.snapshot())} SMS, max_skip {config.max_skip}, "
            + ", ".join(f"{k.split('__')[-1].lower()}={v}" for k, v in self.env.items())
        )
        self.last_seconds = 4.0
        self.force_kill_at = -1
        self.runs = 0
        self.history: dict[str, list[str]] = {}
        self.sync_began = self.emu.clock.now()
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

    def _payload(self, status: str) -> dict[str, Any]:
        rng = self.rng
        payload: dict[str, Any] = {
            **self.template,
            "status": status,
            "text": rng.choice(["hi", "see you at 5", "ok 👍", "Grüße, 日本", "x" * 300]),
        }
        if rng.random() < 0.3:
            payload["attachments"] = [
                {
                    "content_type": rng.choice(ATTACHMENT_TYPES),
                    "filename": f"file{k}.bin",
                    "url": f"https://example.com/upload/{rng.randint(1, 10**9)}",
                }
                for k in range(rng.randint(1, 3))
            ]
        if status == "scheduled":
            at = self.emu.clock.now() + timedelta(seconds=rng.randint(5, 900))
            payload["date_scheduled"] = at.isoformat()
        return payload

    def change(self, touched: set[str] | None = None) -> None:
        """One random API change; ids it touches are added to `touched`."""
        rng = self.rng
        emu = self.emu
        kind = rng.choices(
            [
                "create",
                "update_draft",
                "draft_to_outbox",
                "draft_to_scheduled",
                "cancel_to_draft",
                "delete_sms",
                "delete_lead",
                "burst_same_date_created",
                "clock_advance",
            ],
            weights=[30, 10, 8, 6, 4, 12, 3, 3, 10],
        )[0]
        ids: list[str] = []
        snapshot = emu.snapshot()
        try:
            if kind == "create":
                status = rng.choice(["sent", "inbox", "draft", "outbox", "scheduled"])
                ids.append(emu.create_sms(self._payload(status))["id"])
            elif kind in ("update_draft", "draft_to_outbox", "draft_to_scheduled"):
                drafts = [i for i, s in snapshot.items() if s["status"] == "draft"]
                if not drafts:
                    drafts = [emu.create_sms(self._payload("draft"))["id"]]
                sms_id = rng.choice(drafts)
                ids.append(sms_id)
                if kind == "update_draft":
                    update: dict[str, Any] = {"text": f"edited {rng.randint(1, 10**6)}"}
                    if rng.random() < 0.5:
                        update["attachments"] = self._payload("draft").get("attachments") or []
                    emu.update_sms(sms_id, update)
                elif kind == "draft_to_outbox":
                    emu.update_sms(sms_id, {"status": "outbox", "text": "sending"})
                else:
                    at = emu.clock.now() + timedelta(seconds=rng.randint(5, 900))
                    emu.update_sms(
                        sms_id,
                        {"status": "scheduled", "text": "later", "date_scheduled": at.isoformat()},
                    )
            elif kind == "cancel_to_draft":
                waiting = [i for i, s in snapshot.items() if s["status"] in ("scheduled", "outbox")]
                if waiting:
                    sms_id = rng.choice(waiting)
                    ids.append(sms_id)
                    emu.update_sms(sms_id, {"status": "draft"})
            elif kind == "delete_sms":
                if snapshot:
                    sms_id = rng.choice(sorted(snapshot))
                    ids.append(sms_id)
                    emu.delete_sms(sms_id)
            elif kind == "delete_lead":
                leads = sorted({s["lead_id"] for s in snapshot.values() if s.get("lead_id")})
                if leads:
                    lead = rng.choice(leads)
                    if lead == self.template["lead_id"]:
                        return
                    ids.extend(emu.delete_lead(lead))
            elif kind == "burst_same_date_created":
                at = emu.clock.now() - timedelta(seconds=rng.randint(0, 3 * 86400))
                at = at.replace(microsecond=rng.choice([0, 123000, 999000]))
                for _ in range(rng.randint(150, 230)):
                    payload = self._payload(rng.choice(["sent", "inbox"]))
                    payload["date_created"] = at.isoformat()
                    ids.append(emu.create_sms(payload)["id"])
            elif kind == "clock_advance":
                # Due scheduled/outbox SMS are sent on the jump.
                ids.extend(i for i, s in snapshot.items() if s["status"] in ("scheduled", "outbox"))
                emu.clock.advance(rng.uniform(1, 900))
        except ValidationError as exc:
            self.log(f"    change {kind} rejected by the emulator: {exc}")
            return
        self.counts.api_changes[kind] += 1
        stamp = f"{kind} at {emu.clock.now().isoformat()} (step {self.counts.scenarios})"
        for sms_id in ids:
            self.history.setdefault(sms_id, []).append(stamp)
        if touched is not None:
            touched.update(ids)

    # ---- faults ---------------------------------------------------------------------------

    def arm_faults(self) -> None:
        rng = self.rng
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            kind = rng.choice(
                ["429", "5xx", "hang", "slow", "drop", "truncate", "malformed", "html200"]
            )
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
        return subprocess.Popen(
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
                process.send_signal(signal.SIGKILL)
                killed.set()

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
        lines.append(process.stderr.read())
        process.wait(timeout=300)
        self._keep_log(f"killed {target}", "".join(lines))
        if killed.is_set() and process.returncode == -signal.SIGKILL:
            label = phase if target == "delay" else target
            self.counts.kills[label] += 1
            self.log(f"    killed in {label} (target {target})")
        elif process.returncode not in (0, 4):
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
        if process.returncode == 4:
            # Faults outlasted the retries: a clear stop is allowed; a clean rerun must succeed.
            self.counts.syncs_stopped_by_faults += 1
            last = err.strip().splitlines()[-1] if err.strip() else ""
            if not last.startswith("close-sms: error:"):
                self.counts.unexpected_failures.append(f"exit 4 without a clear message: {last}")
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
        if overlap:
            self.counts.overlapping_syncs += 1
        return touched

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
        before = Counter(self.emu.faults.injected)
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
        touched = self.completed_run(overlap=rng.random() < overlap_chance)
        self.emu.faults.clear()
        self.counts.faults_injected.update(Counter(self.emu.faults.injected) - before)
        snapshot = self.emu.snapshot()
        # Changes made while the sync ran (by the API or by scheduled sends coming due) may
        # legitimately be caught by the next sync only; the next step checks them.
        touched |= {
            sms_id
            for sms_id, sms in snapshot.items()
            if parse_timestamp(sms["date_updated"]) >= self.sync_began
        }
        self.counts.scenarios += 1
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

    def compare(self, snapshot: dict[str, dict[str, Any]], excluded: set[str]) -> None:
        problems = mismatches(self.database, snapshot)
        problems = [p for p in problems if _problem_id(p) not in excluded]
        if problems:
            self.counts.mismatches += len(problems)
            self.counts.mismatch_samples.extend(problems[:5])
            self.log(f"    MISMATCHES: {len(problems)}: {problems[:5]}")
            for sms_id in sorted({_problem_id(p) for p in problems})[:3]:
                self.log(self.explain(sms_id))


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
