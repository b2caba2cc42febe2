"""The command a user can paste to run close-sms again, as this process was started, and the
command's words for the settings and commands its messages name."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from ..errors import FULL_RELOAD, where_to_set

# The command's own ways to set some of the source's settings: its flags, and CLOSE_API_KEY.
# The source's messages name only dlt's ways (it runs without the command too); the command's
# messages name its own way first.
COMMAND_WAYS = {
    "api_key": "CLOSE_API_KEY",
    "base_url": "--base-url",
    "start_date": "--start-date",
    "reconcile": "--reconcile",
    "allow_mass_delete": "--allow-mass-delete",
}


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


def in_command_words(message: str, args: argparse.Namespace) -> str:
    """`message` as the command says it: its own way first wherever a setting's place is named,
    and for dlt's full reload, this command's sync with `--full-refresh`."""
    for name, way in COMMAND_WAYS.items():
        for secret in (False, True):
            where = where_to_set(name, secret)
            message = message.replace(where, f"{way}, or {where}")
    message = message.replace(FULL_RELOAD, "`close-sms sync --full-refresh`")
    # A command in a hint is one that works as printed: on this run's warehouse (and server),
    # even where close-sms is not on PATH.
    return HINTED_COMMAND.sub(lambda hint: _as_printed(hint, args), message)


# A command in a hint: `close-sms COMMAND FLAGS...`.
HINTED_COMMAND = re.compile(r"`close-sms ([a-z-]+)((?: [^`]*)?)`")


def _as_printed(hint: re.Match[str], args: argparse.Namespace) -> str:
    command, flags = hint.group(1), shlex.split(hint.group(2))
    place = [] if {"--database", "--destination"} & set(flags) else _same_place(args, command)
    return f"`{shell_command(command, *place, *flags)}`"


def _same_place(args: argparse.Namespace, command: str) -> list[str]:
    """The flags of `args` that say where a hinted `command` reads and writes: without them, it
    would use the default warehouse, and a sync Close itself rather than the server given."""
    flags = []
    # `webhook` talks to Close alone, with no warehouse.
    if command != "webhook" and getattr(args, "destination", "duckdb") != "duckdb":
        flags += ["--destination", args.destination]
    if command != "webhook" and getattr(args, "database", None):
        flags += ["--database", args.database]
    if command in ("sync", "webhook") and getattr(args, "base_url", None):
        flags += ["--base-url", args.base_url]
    return flags
