"""Draw the demo's report and take the README's screenshot of it in headless Chromium.

    python examples/report_screenshot.py [--database close_sms_demo.duckdb] [--out docs/report.png]

Without an existing `--database` it runs `close-sms demo` first (the emulator's seeded account).
It needs the `[cli]` extra and a Chromium (`apt-get install chromium`); as root, Chromium runs
without its sandbox.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The header and the first panels: what a reader of the README sees first.
WINDOW = "1280,1450"
# Time for plotly.js to draw every chart before the shot (virtual milliseconds).
RENDER_BUDGET_MS = "15000"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=Path, default=ROOT / "close_sms_demo.duckdb")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("report_screenshot: no chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    close_sms = [sys.executable, "-m", "close_sms.app.cli"]
    if not args.database.exists():
        demo = [*close_sms, "demo", "--database", str(args.database), "--quiet"]
        subprocess.run(demo, check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "report.html"
        report = [*close_sms, "report", "--database", str(args.database), "--out", str(page)]
        subprocess.run(report, check=True)
        shot = [chromium, "--headless", "--disable-gpu", "--hide-scrollbars"]
        if os.geteuid() == 0:
            shot.append("--no-sandbox")
        shot += [f"--window-size={WINDOW}", f"--virtual-time-budget={RENDER_BUDGET_MS}"]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shot += [f"--screenshot={args.out.resolve()}", page.as_uri()]
        subprocess.run(shot, check=True, capture_output=True)
    print(f"Screenshot written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
