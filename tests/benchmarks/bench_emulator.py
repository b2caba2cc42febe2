"""Throughput of the Close API emulator (not a test): SMS served per second, rate limit off.

python tests/benchmarks/bench_emulator.py [--sms 1000000] [--pages 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta, timezone

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import requests  # noqa: E402

from close_sms.emulator import (  # noqa: E402
    DEMO_API_KEY,
    Emulator,
    EmulatorConfig,
    EmulatorServer,
)


def _page_through(base_url: str, params: dict[str, str], pages: int) -> int:
    """Offset-page a listing; returns SMS received."""
    session = requests.Session()
    session.auth = (DEMO_API_KEY, "")
    served, skip = 0, 0
    for _ in range(pages):
        body = session.get(
            f"{base_url}/activity/sms/", params={**params, "_skip": skip, "_limit": 100}, timeout=30
        ).json()
        served += len(body["data"])
        skip += len(body["data"])
        if not body["has_more"]:
            skip = 0
    return served


def main() -> None:
    """Generate, serve and measure."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sms", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    emu = Emulator(EmulatorConfig(rps=None))
    started = time.perf_counter()
    emu.generate(n=args.sms, seed=7)
    gen_s = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"generate: {args.sms:,} SMS in {gen_s:.1f}s ({args.sms / gen_s:,.0f} SMS/s), "
        f"max RSS {rss_mb:,.0f} MB, {len(emu.store.events):,} events"
    )

    with EmulatorServer(emu) as server:
        end = emu.clock.now()
        # A realistic sync query: a 30-day date_created window.
        lo = (end - timedelta(days=60)).astimezone(timezone.utc).isoformat()
        hi = (end - timedelta(days=30)).astimezone(timezone.utc).isoformat()
        windowed = {"date_created__gt": lo, "date_created__lte": hi}
        for label, params, workers in (
            ("unfiltered, 1 client", {}, 1),
            ("date window, 1 client", windowed, 1),
            (f"date window, {args.workers} clients", windowed, args.workers),
        ):
            started = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                counts = list(
                    pool.map(
                        lambda _, p=params, w=workers: _page_through(
                            server.base_url, p, args.pages // w
                        ),
                        range(workers),
                    )
                )
            took = time.perf_counter() - started
            total = sum(counts)
            print(
                f"{label:28s}: {total:,} SMS in {took:.2f}s = {total / took:,.0f} SMS/s, "
                f"{args.pages / took:,.0f} req/s"
            )
        started = time.perf_counter()
        session = requests.Session()
        session.auth = (DEMO_API_KEY, "")
        n_events = 0
        cursor = None
        for _ in range(100):
            params = {"object_type": "activity.sms", "action": "created"}
            if cursor:
                params["_cursor"] = cursor
            body = session.get(f"{server.base_url}/event/", params=params, timeout=30).json()
            n_events += len(body["data"])
            cursor = body["cursor_next"]
            if not cursor:
                break
        took = time.perf_counter() - started
        print(
            f"{'events, 1 client':28s}: {n_events:,} events in {took:.2f}s = "
            f"{n_events / took:,.0f} events/s"
        )


if __name__ == "__main__":
    main()
