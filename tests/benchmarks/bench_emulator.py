"""Throughput of the Close API emulator (not a test): SMS served per second, rate limit off.

python tests/benchmarks/bench_emulator.py [--sms 1000000] [--pages 600] [--clients 8 2] [--repeats 5]

The emulator runs in its own process (as in bench_sync.py), so the clients' CPU is not counted
against it. Each client is a thread with its own `requests.Session` (keep-alive), as each of
the sync's workers is, offset-paging 100 SMS at a time through a 30-day `date_created` window.
Every client count is measured `--repeats` times, interleaved; the best and the median are
printed. Keep-alive itself is checked by tests/emulator/test_server.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email.utils import parsedate_to_datetime

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import orjson  # noqa: E402
import requests  # noqa: E402
from bench_sync import EmulatorProcess  # noqa: E402

from close_api_emulator import DEMO_API_KEY  # noqa: E402


def _session() -> requests.Session:
    session = requests.Session()
    session.auth = (DEMO_API_KEY, "")
    return session


def _page_through(base_url: str, params: dict[str, str], pages: int) -> int:
    """Offset-page a listing with one session; returns SMS received."""
    session = _session()
    served, skip = 0, 0
    for _ in range(pages):
        response = session.get(
            f"{base_url}/activity/sms/", params={**params, "_skip": skip, "_limit": 100}, timeout=30
        )
        response.raise_for_status()
        # orjson rather than response.json(): the client's parsing shares the machine's 2 cores.
        body = orjson.loads(response.content)
        served += len(body["data"])
        skip += len(body["data"])
        if not body["has_more"]:
            skip = 0
    return served


def _run(base_url: str, params: dict[str, str], clients: int, pages: int) -> float:
    """`pages` requests split over `clients` concurrent sessions; returns SMS/s."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        served = sum(
            pool.map(lambda _: _page_through(base_url, params, pages // clients), range(clients))
        )
    return served / (time.perf_counter() - started)


def _events_per_second(base_url: str) -> float:
    """Cursor-page the event log with one client."""
    session = _session()
    started = time.perf_counter()
    n_events, cursor = 0, None
    for _ in range(100):
        params = {"object_type": "activity.sms", "action": "created"}
        if cursor:
            params["_cursor"] = cursor
        body = orjson.loads(session.get(f"{base_url}/event/", params=params, timeout=30).content)
        n_events += len(body["data"])
        cursor = body["cursor_next"]
        if not cursor:
            break
    return n_events / (time.perf_counter() - started)


def main() -> None:
    """Generate in a child process, serve, and measure from this one."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sms", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=600, help="requests per measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 2])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    with EmulatorProcess(args.sms) as emu:
        print(f"generate: {args.sms:,} SMS in {time.perf_counter() - started:.1f}s (child process)")
        # A realistic sync query: a 30-day date_created window ending 30 days before the
        # newest SMS, whose date the emulator's Date header gives (its clock, not ours).
        date = requests.get(emu.base_url + "/me/", auth=(DEMO_API_KEY, "")).headers["Date"]
        end = parsedate_to_datetime(date)
        windowed = {
            "date_created__gt": (end - timedelta(days=60)).isoformat(),
            "date_created__lte": (end - timedelta(days=30)).isoformat(),
        }
        _run(emu.base_url, windowed, max(args.clients), max(args.clients) * 5)  # warm-up
        rates: dict[int, list[float]] = {n: [] for n in args.clients}
        for _ in range(args.repeats):
            for clients in args.clients:
                rates[clients].append(_run(emu.base_url, windowed, clients, args.pages))
        for clients, runs in rates.items():
            print(
                f"date window, {clients} keep-alive clients: best {max(runs):,.0f} SMS/s, "
                f"median {statistics.median(runs):,.0f} SMS/s over {len(runs)} runs of "
                f"{args.pages} requests"
            )
        print(f"events, 1 client: {_events_per_second(emu.base_url):,.0f} events/s")


if __name__ == "__main__":
    main()
