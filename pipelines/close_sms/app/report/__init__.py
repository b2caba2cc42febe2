"""`close-sms report`: one self-contained HTML page of charts over the analytics views.

Templates and local numbers are named from the context tables (views
`sms_template_performance` and `sms_numbers`); its last panel is the sync's health, from the run
ledger (view `sync_health`).

The page embeds plotly.js (no CDN), so it opens offline from a file or an e-mail. Next to
each chart, the rows it was drawn from are embedded as JSON
(`<script type="application/json" id="data-<chart>">`), so tests and curious readers can
check the numbers without parsing plotly's figure.

`queries` reads the rows, `figures` and `ranked` draw the panels, `page` writes the page.
"""

from .page import write_report
from .queries import NO_REPLY, RESPONSE_BUCKETS, TOP_NUMBERS, TOP_TEMPLATES, TOP_USERS, collect

__all__ = [
    "NO_REPLY",
    "RESPONSE_BUCKETS",
    "TOP_NUMBERS",
    "TOP_TEMPLATES",
    "TOP_USERS",
    "collect",
    "write_report",
]
