"""`close-sms webhook create|list|delete`: the Close subscription that rings `follow`'s doorbell.

`create` keeps the signature key Close shows once in the project's `.dlt/secrets.toml` (mode
0600), beside the subscription's id, and never prints it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dlt
import tomlkit

from ..errors import CloseApiError, ConfigError
from ..source import settings
from ..source.api.client import CloseClient, RequestRejected, UncertainWrite
from ..source.api.webhooks import (
    SUBSCRIPTION_ID,
    create_subscription,
    delete_subscription,
    list_subscriptions,
    sync_events,
)
from ..warehouse.destination import Warehouse
from .config import CommandSettings, close_client
from .doorbell import PATH as DOORBELL_PATH
from .runner import Say
from .subscription_watch import SubscriptionWatch

KEY_SETTING = "webhook_signature_key"
ID_SETTING = "webhook_subscription_id"


def secrets_file() -> Path:
    """The project's `.dlt/secrets.toml`, where dlt reads secrets from."""
    return Path(dlt.current.run_context().settings_dir) / "secrets.toml"


def stored_subscription_id() -> str | None:
    """The id `webhook create` stored, if any."""
    return CommandSettings.read().webhook_subscription_id or None


def subscription_watch(
    base_url: str | None, command_settings: CommandSettings, warehouse: Warehouse, say: Say
) -> SubscriptionWatch | None:
    """The follower's watch of the subscription `webhook create` stored, if there is one."""
    subscription_id = command_settings.webhook_subscription_id
    if not subscription_id or not SUBSCRIPTION_ID.fullmatch(subscription_id):
        say(
            f"The webhook subscription's state is not watched: {ID_SETTING} is not set, or "
            "not an id (`close-sms webhook create` sets it)"
        )
        return None
    client = close_client(base_url)
    return SubscriptionWatch(client, subscription_id, warehouse, command_settings.alerts(), say)


def cmd_webhook(args: argparse.Namespace) -> int:
    """Dispatch `webhook create|list|delete`."""
    client = close_client(args.base_url)
    actions: dict[str, Callable[[argparse.Namespace, CloseClient], None]] = {
        "create": _create,
        "list": _list,
        "delete": _delete,
    }
    actions[args.webhook_action](args, client)
    return 0


def _create(args: argparse.Namespace, client: CloseClient) -> None:
    url = _check_receiver_url(args.url)
    existing = list_subscriptions(client)
    stored = stored_subscription_id()
    for subscription in existing:
        if subscription["id"] == stored or subscription.get("url") == url:
            raise ConfigError(
                f"subscription {subscription['id']} already sends to "
                f"{subscription.get('url')}: delete it first with "
                f"`close-sms webhook delete {subscription['id']}`"
            )
    events = sync_events(context=not args.sms_only)
    try:
        answer = create_subscription(client, url, events)
    except UncertainWrite as exc:
        raise _lost_answer(client, url, {s["id"] for s in existing}, exc) from None
    subscription_id = answer["id"]
    try:
        path = store_signature_key(subscription_id, _hex_key(answer.get("signature_key")))
    except (ValueError, ConfigError, OSError) as exc:
        # A subscription whose key is lost can never be verified: it is removed, not left.
        delete_subscription(client, subscription_id)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(
            f"subscription {subscription_id} was deleted again: its signature key could not be "
            f"kept ({reason})"
        ) from None
    print(
        f"Subscribed {subscription_id}: Close sends {len(events)} event types to {url}\n"
        f"Its signature key is stored in {path} (mode 0600) as {KEY_SETTING}; set "
        "webhook_listen and run `close-sms follow` to answer it."
    )


def _hex_key(value: Any) -> str:
    """Close's `signature_key`, checked to be the hex the doorbell decodes."""
    try:
        if isinstance(value, str) and bytes.fromhex(value):
            return value.lower()
    except ValueError:
        pass
    raise ValueError("Close's answer held no hex signature_key")


def _lost_answer(
    client: CloseClient, url: str, before: set[str], exc: UncertainWrite
) -> CloseApiError:
    """What to tell when Close's answer to the create was lost: whether it made one."""
    try:
        made = [s["id"] for s in list_subscriptions(client) if s["id"] not in before]
    except CloseApiError:
        made = []
    if made:
        return CloseApiError(
            f"{exc}: Close created {', '.join(made)}, but its signature key, shown only once, "
            f"was lost; delete it with `close-sms webhook delete {made[0]}` and create again"
        )
    return CloseApiError(f"{exc}: Close lists no new subscription; run the command again")


def _check_receiver_url(url: str) -> str:
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"--url {url!r} is not an http(s) URL")
    if parsed.path.rstrip("/") != DOORBELL_PATH:
        print(
            f"close-sms: warning: {url} does not end in {DOORBELL_PATH}, the path "
            "`close-sms follow` answers: the proxy in front of it must map it there",
            file=sys.stderr,
        )
    return url.strip()


def _list(args: argparse.Namespace, client: CloseClient) -> None:
    stored = stored_subscription_id()
    subscriptions = list_subscriptions(client)
    if not subscriptions:
        print("No webhook subscriptions.")
    for subscription in subscriptions:
        mark = "  (this project's key)" if subscription["id"] == stored else ""
        events = subscription.get("events")
        count = len(events) if isinstance(events, list) else "?"
        print(
            f"{subscription['id']}  {subscription.get('status', '?')}  "
            f"{subscription.get('url')}  {count} event types{mark}"
        )


def _delete(args: argparse.Namespace, client: CloseClient) -> None:
    subscription_id = args.id
    if not SUBSCRIPTION_ID.fullmatch(subscription_id):
        raise ConfigError(f"{subscription_id!r} is not a webhook subscription id")
    try:
        delete_subscription(client, subscription_id)
    except RequestRejected as exc:
        if exc.status != 404:
            raise
        raise ConfigError(f"Close has no webhook subscription {subscription_id}") from None
    if subscription_id == stored_subscription_id():
        forget_signature_key()
    print(f"Deleted {subscription_id}")


def store_signature_key(subscription_id: str, key_hex: str) -> Path:
    """Write the key and id into `secrets.toml` under `[sources.close_sms]`, mode 0600."""
    path = secrets_file().resolve()
    document = _read_toml(path)
    section = document.setdefault("sources", tomlkit.table()).setdefault(
        settings.SOURCE_NAME, tomlkit.table()
    )
    section[KEY_SETTING] = key_hex
    section[ID_SETTING] = subscription_id
    _write_private(path, tomlkit.dumps(document))
    return path


def forget_signature_key() -> None:
    """Remove what `store_signature_key` wrote, keeping the rest of the file."""
    path = secrets_file()
    document = _read_toml(path)
    section = document.get("sources", {}).get(settings.SOURCE_NAME, {})
    for name in (KEY_SETTING, ID_SETTING):
        section.pop(name, None)
    _write_private(path, tomlkit.dumps(document))


def _read_toml(path: Path) -> Any:
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return tomlkit.document()
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise ConfigError(f"{path}: cannot be read as TOML ({exc})") from None


def _write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step, readable by its owner alone: a kill or a full
    disk leaves the old file whole."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secrets.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp made it 0600, the mode the replaced file gets with it.
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def add_webhook_command(command: argparse.ArgumentParser) -> None:
    """`webhook`'s actions and their flags."""
    command.add_argument(
        "--base-url", help=f"Close API base URL (default {settings.DEFAULT_BASE_URL})"
    )
    actions = command.add_subparsers(dest="webhook_action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="subscribe a URL to the events the sync reads, and store its key"
    )
    create.add_argument("--url", required=True, help=f"where Close sends, ending {DOORBELL_PATH}")
    create.add_argument(
        "--sms-only", action="store_true", help="only SMS events (for a sync with context = false)"
    )
    actions.add_parser("list", help="show the organization's subscriptions")
    delete = actions.add_parser("delete", help="remove a subscription")
    delete.add_argument("id", help="the subscription's id, as `webhook list` shows it")
