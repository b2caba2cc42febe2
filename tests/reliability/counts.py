"""What a randomized run did: its counts, printed at the end and asserted on."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


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
    syncs_with_context_failed: int = 0
    overlapping_syncs: int = 0
    horizon_jumps: int = 0
    final_checks: int = 0
    mismatches: int = 0
    context_mismatches: int = 0
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
                "  syncs that loaded the SMS but not a context table (exit 9, SMS checked, "
                f"then rerun): {self.syncs_with_context_failed}",
                f"  horizon jumps (>30 days): {self.horizon_jumps}",
                f"  final exact checks (clock stopped, no exclusions): {self.final_checks}",
                f"  unexpected failures:  {len(self.unexpected_failures)}",
                f"  mismatches:           {self.mismatches} "
                f"(of them in the context tables: {self.context_mismatches})",
            ]
        )
