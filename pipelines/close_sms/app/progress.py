"""How far a backfill is and how long it has left: a live bar on a terminal, a line in a log."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from ..errors import needs_cli_extra
from ..source import SyncProgress
from .alerts import format_duration
from .config import PROGRESS_INTERVAL_SECONDS

if TYPE_CHECKING:
    from rich.progress import TaskID

Clock = Callable[[], float]
OnPage = Callable[[SyncProgress], None]


class BackfillEstimate:
    """The SMS a backfill has left and the time they take, from what it has read so far.

    A backfill's range may start in 1970 and reach far into the future, and a worker reads an
    empty decade in one request. The share of the range read says little of the work done, and
    neither does the SMS read per millisecond read (it is the same ratio). So each page gives a
    density instead: its SMS over the milliseconds of `date_created` it took off the pending
    windows. Their mean weighted by SMS is the density where the SMS are (empty spans weigh
    nothing); the SMS left are that density times the range left, and the time left is those
    SMS at the rate this run has read so far, chunk loads included. Old SMS are usually sparser
    than new ones, so the estimate errs towards more work left.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._start: tuple[float, int] | None = None  # clock and SMS read at the first page
        self._last: tuple[int, int] = (0, 0)  # SMS read and range left at the last page
        self._unspanned = 0  # SMS of pages that took no range off (one crowded second)
        self._weighted_density = 0.0  # sum of SMS x density
        self._weight = 0  # sum of SMS
        self.read = 0
        self.pending_ms = 0

    def observe(self, read: int, pending_ms: int) -> None:
        """Take in the backfill after a page: SMS read in all, milliseconds of range left."""
        now = self._clock()
        if self._start is None or read < self._last[0]:
            self._start = (now, read)
        else:
            sms = read - self._last[0] + self._unspanned
            spanned = self._last[1] - pending_ms
            if spanned > 0:
                self._weighted_density += sms * sms / spanned
                self._weight += sms
                self._unspanned = 0
            else:
                self._unspanned = sms
        self._last = (read, pending_ms)
        self.read, self.pending_ms = read, pending_ms

    def sms_left(self) -> int | None:
        """The SMS estimated left to read; None until a page has measured a density."""
        if self.pending_ms <= 0:
            return 0
        if not self._weight:
            return None
        return round(self._weighted_density / self._weight * self.pending_ms)

    def fraction_done(self) -> float | None:
        left = self.sms_left()
        if left is None:
            return None
        return self.read / (self.read + left) if self.read + left else 1.0

    def seconds_left(self) -> float | None:
        """The time the SMS left take at this run's rate; None until it has a rate."""
        left = self.sms_left()
        if left is None or self._start is None:
            return None
        elapsed, read = self._clock() - self._start[0], self.read - self._start[1]
        if left == 0:
            return 0.0
        return left * elapsed / read if read > 0 and elapsed > 0 else None


def _summary(estimate: BackfillEstimate) -> str:
    """Done and left in words: '37% (12,300 of ~33,000 SMS), about 1m 05s left'."""
    fraction, left = estimate.fraction_done(), estimate.sms_left()
    if fraction is None or left is None:
        return f"{estimate.read:,} SMS read, estimating what is left"
    seconds = estimate.seconds_left()
    eta = f"about {format_duration(seconds)} left" if seconds is not None else "time left unknown"
    return f"{fraction:.0%} ({estimate.read:,} of ~{estimate.read + left:,} SMS), {eta}"


class LogProgress:
    """A plain progress line every `interval` seconds, for logs (stderr not a terminal)."""

    def __init__(self, stream: TextIO, interval: float, clock: Clock = time.monotonic) -> None:
        self.estimate = BackfillEstimate(clock)
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._last_line: float | None = None

    def on_page(self, progress: SyncProgress) -> None:
        self.estimate.observe(progress.backfill_loaded, progress.backfill_pending_ms)
        now = self._clock()
        if self._last_line is None:
            self._last_line = now
        if now - self._last_line < self._interval:
            return
        self._last_line = now
        requests = progress.requests
        print(
            f"  backfill: {_summary(self.estimate)}; {progress.windows_left} windows pending, "
            # The workers wait side by side: their waits add up to more than the run's time.
            f"{requests.rate_limit_waits} rate-limit waits "
            f"({requests.rate_limit_wait_seconds:.1f} s summed over the workers)",
            file=self._stream,
            flush=True,
        )

    def close(self) -> None:
        """Nothing to end: every line is complete."""


class TerminalProgress:
    """A live progress bar (rich's), for a person watching a terminal."""

    def __init__(self, stream: TextIO, clock: Clock = time.monotonic) -> None:
        # Imported here: cron runs, which have no terminal, start faster without it, and the
        # bare package (no [cli] extra) may lack it.
        with needs_cli_extra("the progress bar"):
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self.estimate = BackfillEstimate(clock)
        # rich also shows lines printed to stderr meanwhile above the bar.
        self._bar = Progress(
            TextColumn("backfill"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[summary]}"),
            console=Console(file=stream),
        )
        self._task: TaskID | None = None

    def on_page(self, progress: SyncProgress) -> None:
        self.estimate.observe(progress.backfill_loaded, progress.backfill_pending_ms)
        left = self.estimate.sms_left()
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task("backfill", total=None, summary="")
        self._bar.update(
            self._task,
            completed=self.estimate.read,
            total=None if left is None else self.estimate.read + left,
            summary=_summary(self.estimate),
        )

    def close(self) -> None:
        if self._task is not None:
            self._bar.stop()


@contextmanager
def backfill_progress(
    quiet: bool,
    interval: float = PROGRESS_INTERVAL_SECONDS,
    stream: TextIO | None = None,
) -> Iterator[OnPage | None]:
    """A backfill page callback that shows progress on `stream` (stderr); None when `quiet`."""
    if quiet:
        yield None
        return
    stream = stream or sys.stderr
    view = TerminalProgress(stream) if stream.isatty() else LogProgress(stream, interval)
    try:
        yield view.on_page
    finally:
        view.close()
