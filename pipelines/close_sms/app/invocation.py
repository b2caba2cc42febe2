"""The command a user can paste to run close-sms again, as this process was started."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def invoked_as() -> str:
    """`close-sms` when the shell finds it, else the script's path as typed (`.venv/bin/close-sms`,
    which works from the same folder), else `python -m close_sms.app.cli` with this Python."""
    typed = sys.argv[0] if sys.argv else ""
    if Path(typed).name == "close-sms":
        if os.sep not in typed and shutil.which(typed):
            return typed
        if os.sep in typed and Path(typed).is_file():
            return shlex.quote(typed)
    return f"{shlex.quote(sys.executable)} -m close_sms.app.cli"


def shell_command(*args: object) -> str:
    """`close-sms ARGS` as a line to paste into a shell, each argument quoted as it needs."""
    return " ".join([invoked_as(), *(shlex.quote(str(arg)) for arg in args)])
