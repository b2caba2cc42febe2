"""Benchmark of `close-sms follow` (a script, not a test): latency, budget, CPU, memory, copies.

    python tests/benchmarks/bench_follow.py                  # every row (~75 min: row m is an hour)
    python tests/benchmarks/bench_follow.py --only lbc       # some rows, by their letters
    python tests/benchmarks/bench_follow.py --memory-minutes 10 --copy-sms 100000

The emulator runs in this process, on 127.0.0.1, with a rate limit of `RPS` requests/s per key
and endpoint group (Close's documented example, 20 rps); the follower is the real CLI in a
subprocess, measured with psutil. A change is an inbound SMS created through the emulator,
which logs its `created` event at once (no consolidation delay applies): its latency is the
time from the create to the moment a reader sees the row (a read-only DuckDB connection to the
reader copy every 50 ms, or a PostgreSQL query).

Rows:
  l  latency p95 over `--changes` changes at random moments, polling alone (follow_interval
     10 s) and with the doorbell (a webhook subscription of the emulator to the follower's
     listener), on DuckDB with the reader copy, and on PostgreSQL when `--postgres DSN` is given
  b  a quiet follower over `--quiet-seconds`: the requests of its busiest endpoint group / that
     group's limit over the span
  c  the same quiet span: the follower's CPU seconds per cycle (skipped ones included)
  m  a follower at one change a second: its RSS after `--memory-minutes` / after 5 minutes
  r  a reader copy of a warehouse of `--copy-sms` SMS: the CPU seconds of one copy, and the share
     of one core a follower at one change a second spends copying (its pacer's spacing)
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import psutil
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from close_api_emulator import (  # noqa: E402
    DEMO_API_KEY,
    Emulator,
    EmulatorConfig,
    EmulatorServer,
)
from tests.support import free_port  # noqa: E402

RPS = 20.0
INTERVAL = 10.0
Reader = Callable[[str], bool]


@contextmanager
def emulator(sms: int, **config: Any) -> Iterator[tuple[Emulator, str]]:
    emu = Emulator(EmulatorConfig(**{"rps": RPS, **config}))
    emu.generate(n=sms, seed=11)
    server = EmulatorServer(emu, port=0, quiet=True).start()
    try:
        yield emu, server.base_url
    finally:
        server.stop()


@contextmanager
def follower(base_url: str, args: list[str], **settings: str) -> Iterator[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    env.update(RUNTIME__DLTHUB_TELEMETRY="false", SOURCES__CLOSE_SMS__API_KEY=DEMO_API_KEY)
    env.update({f"SOURCES__CLOSE_SMS__{k.upper()}": v for k, v in settings.items()})
    close_sms = str(Path(sys.executable).with_name("close-sms"))
    process = subprocess.Popen(
        [close_sms, "follow", "--quiet", "--base-url", base_url, *args],
        env=env,
        cwd=tempfile.mkdtemp(prefix="bench-follow-"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        _, err = process.communicate(timeout=60)
        if process.returncode != 143:
            print(f"follower exited {process.returncode}: {err[-2000:]}", file=sys.stderr)


def _inbound(emu: Emulator) -> str:
    base = next(iter(emu.snapshot().values()))
    fields = ("lead_id", "contact_id", "remote_phone", "local_phone")
    payload = {k: base[k] for k in fields} | {"status": "inbox", "direction": "inbound"}
    return emu.create_sms(payload | {"text": f"bench {secrets.token_hex(4)}"})["id"]


def duckdb_reader(copy: Path) -> Reader:
    def sees(sms_id: str) -> bool:
        try:
            with duckdb.connect(str(copy), read_only=True) as con:
                sql = "SELECT count(*) FROM close_sms.sms WHERE id = ?"
                return con.execute(sql, [sms_id]).fetchone()[0] == 1
        except duckdb.Error:
            return False

    return sees


def postgres_reader(dsn: str) -> Reader:
    import psycopg2

    def sees(sms_id: str) -> bool:
        try:
            with psycopg2.connect(dsn) as con, con.cursor() as cur:
                cur.execute("SELECT count(*) FROM close_sms.sms WHERE id = %s", (sms_id,))
                return cur.fetchone()[0] == 1
        except psycopg2.Error:
            return False

    return sees


def _wait_for(condition: Callable[[], bool], seconds: float, poll: float = 0.05) -> float:
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > seconds:
            raise RuntimeError(f"not within {seconds} s")
        time.sleep(poll)
    return time.monotonic() - began


def latencies(emu: Emulator, sees: Reader, changes: int, rng: random.Random) -> list[float]:
    """Seconds from each change to the reader seeing it, the changes at random moments."""
    found = []
    for _ in range(changes):
        time.sleep(rng.uniform(1.0, INTERVAL))
        sms_id = _inbound(emu)
        found.append(_wait_for(lambda sms_id=sms_id: sees(sms_id), 120))
    return found


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def _subscribe(base_url: str, port: int) -> str:
    answer = requests.post(
        base_url + "/webhook/",
        json={
            "url": f"http://127.0.0.1:{port}/webhooks/close",
            "events": [{"object_type": "activity.sms", "action": "created"}],
        },
        auth=(DEMO_API_KEY, ""),
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["signature_key"]


def latency_rows(args: argparse.Namespace, table: Table) -> None:
    rng = random.Random(5)
    workdir = Path(tempfile.mkdtemp(prefix="bench-follow-l-"))
    places = ["DuckDB + reader copy"] + (["PostgreSQL"] if args.postgres else [])
    for where in places:
        for doorbell in (False, True):
            run_dir = workdir / f"{where[:4]}-{doorbell}"
            run_dir.mkdir()
            settings = {"follow_interval": str(INTERVAL)}
            if where == "PostgreSQL":
                dsn = _fresh_postgres(args.postgres)
                os.environ["DESTINATION__POSTGRES__CREDENTIALS"] = dsn
                place, sees = ["--destination", "postgres"], postgres_reader(dsn)
            else:
                place = ["--database", str(run_dir / "w.duckdb")]
                settings["reader_copy"] = str(run_dir / "copy.duckdb")
                sees = duckdb_reader(run_dir / "copy.duckdb")
            with emulator(args.sms) as (emu, base_url):
                if doorbell:
                    port = free_port()
                    settings["webhook_listen"] = str(port)
                    settings["webhook_signature_key"] = _subscribe(base_url, port)
                with follower(base_url, place, **settings):
                    first = _inbound(emu)  # after the backfill
                    _wait_for(lambda first=first, sees=sees: sees(first), 600, poll=0.5)
                    found = latencies(emu, sees, args.changes, rng)
            target = 3.0 if doorbell else 15.0
            how = "with the doorbell" if doorbell else f"polling alone, {INTERVAL:g} s"
            table.add(
                "l",
                f"latency p95, {how}, {where} ({args.changes} changes)",
                f"{p95(found):.2f} s (median {statistics.median(found):.2f} s, max "
                f"{max(found):.2f} s)",
                f"<= {target:g} s",
                p95(found) <= target,
            )


def _fresh_postgres(dsn: str) -> str:
    import psycopg2

    name = f"bench_follow_{secrets.token_hex(4)}"
    con = psycopg2.connect(dsn)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    con.close()
    return dsn.rsplit("/", 1)[0] + f"/{name}"


def _group(method: str, path: str) -> str:
    parts = [p if not p or "_" not in p else "{id}" for p in path.split("/")]
    return f"{method} {'/'.join(parts)}"


def quiet_rows(args: argparse.Namespace, table: Table) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-follow-q-"))
    with emulator(args.sms) as (emu, base_url):
        settings = {"follow_interval": str(INTERVAL)}
        with follower(base_url, ["--database", str(workdir / "w.duckdb")], **settings) as proc:
            first = _inbound(emu)
            _wait_for(lambda: duckdb_reader(workdir / "w.duckdb")(first), 600, poll=1.0)
            time.sleep(2 * INTERVAL)  # past the cycle that read the first change
            emu.clear_request_log()
            cpu = psutil.Process(proc.pid).cpu_times()
            time.sleep(args.quiet_seconds)
            after = psutil.Process(proc.pid).cpu_times()
            log = emu.request_log
    groups = Counter(_group(r.method, r.path) for r in log)
    busiest, count = groups.most_common(1)[0]
    share = count / (RPS * args.quiet_seconds)
    table.add(
        "b",
        f"quiet follower, {args.quiet_seconds:g} s: busiest group's requests / its limit",
        f"{count} ({busiest}) / ({RPS:g} rps x {args.quiet_seconds:g} s) = {share:.1%}; "
        f"{sum(groups.values())} requests in all",
        "<= 10%",
        share <= 0.10,
    )
    cycles = args.quiet_seconds / INTERVAL
    spent = (after.user + after.system) - (cpu.user + cpu.system)
    table.add(
        "c",
        "quiet follower: CPU seconds per cycle (probes and full cycles)",
        f"{spent:.2f} s / {cycles:.0f} cycles = {spent / cycles:.3f} s",
        "<= 0.2 s",
        spent / cycles <= 0.2,
    )


def memory_row(args: argparse.Namespace, table: Table) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-follow-m-"))
    with emulator(args.sms) as (emu, base_url):
        settings = {"follow_interval": str(INTERVAL)}
        with follower(base_url, ["--database", str(workdir / "w.duckdb")], **settings) as proc:
            began = time.monotonic()
            samples: dict[int, float] = {}
            while (elapsed := time.monotonic() - began) < args.memory_minutes * 60:
                _inbound(emu)
                minute = int(elapsed // 60)
                rss = psutil.Process(proc.pid).memory_info().rss / 2**20
                samples[minute] = max(samples.get(minute, 0.0), rss)
                time.sleep(max(0.0, began + elapsed + 1.0 - time.monotonic()))
    at_five, at_end = samples[min(4, len(samples) - 1)], samples[max(samples)]
    table.add(
        "m",
        f"RSS after {args.memory_minutes:g} min at one change a second / after 5 min",
        f"{at_end:.0f} MB / {at_five:.0f} MB = {at_end / at_five:.2f}",
        "<= 1.1",
        at_end / at_five <= 1.1,
    )


def copy_row(args: argparse.Namespace, table: Table) -> None:
    from close_sms.warehouse.destination import Warehouse
    from close_sms.warehouse.reader_copy import COPY_CPU_SHARE, CopyPacer, publish_reader_copy

    workdir = Path(tempfile.mkdtemp(prefix="bench-follow-r-"))
    database, copy = workdir / "w.duckdb", workdir / "copy.duckdb"
    with emulator(args.copy_sms, rps=None) as (_, base_url):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
        env.update(RUNTIME__DLTHUB_TELEMETRY="false", SOURCES__CLOSE_SMS__API_KEY=DEMO_API_KEY)
        close_sms = str(Path(sys.executable).with_name("close-sms"))
        subprocess.run(
            [close_sms, "sync", "--quiet", "--base-url", base_url, "--database", str(database)],
            env=env,
            check=True,
        )
    warehouse = Warehouse.configure("duckdb", database, reader_copy=copy)
    pacer = CopyPacer()
    began = time.monotonic()
    for _ in range(5):
        publish_reader_copy(warehouse, changed=True, pacer=pacer)
    per_copy = pacer.cpu_seconds / pacer.copies
    share = pacer.cpu_seconds / (pacer.not_before - began)
    size = database.stat().st_size / 2**20
    table.add(
        "r",
        f"reader copy of {args.copy_sms:,} SMS ({size:.0f} MB): CPU of a copy; copying's share "
        "of a core for a follower at one change a second",
        f"{per_copy:.2f} s; {share:.2f} (one copy each {per_copy / COPY_CPU_SHARE:.1f} s)",
        "share <= 0.25",
        share <= COPY_CPU_SHARE + 0.01,
    )
    shutil.rmtree(workdir, ignore_errors=True)


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, key: str, figure: str, value: str, target: str, ok: bool) -> None:
        self.rows.append((key, figure, value, target, "pass" if ok else "FAIL"))
        print(f"{key}  {figure}: {value} (target {target}) {'pass' if ok else 'FAIL'}", flush=True)

    def print(self) -> None:
        print("\n| row | figure | value | target | verdict |\n|---|---|---|---|---|")
        for row in self.rows:
            print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="lbcmr", help="rows to run, by their letters")
    parser.add_argument("--sms", type=int, default=5_000, help="SMS in the followed account")
    parser.add_argument("--changes", type=int, default=20, help="changes per latency row")
    parser.add_argument("--quiet-seconds", type=float, default=120.0)
    parser.add_argument("--memory-minutes", type=float, default=60.0)
    parser.add_argument("--copy-sms", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="a PostgreSQL server's DSN, for row l on PostgreSQL")
    args = parser.parse_args()
    table = Table()
    if "l" in args.only:
        latency_rows(args, table)
    if "b" in args.only or "c" in args.only:
        quiet_rows(args, table)
    if "m" in args.only:
        memory_row(args, table)
    if "r" in args.only:
        copy_row(args, table)
    table.print()


if __name__ == "__main__":
    main()
