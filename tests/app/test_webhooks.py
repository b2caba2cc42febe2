"""`close-sms webhook create|list|delete`, the follower's watch of its subscription, and Close's
signed deliveries (from the emulator) ringing the follower's doorbell."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
import tomllib

from close_sms.app.subscription_watch import SubscriptionWatch, read_subscription
from close_sms.errors import ApiContractError
from close_sms.source.api.client import CloseClient
from close_sms.source.api.webhooks import create_subscription, list_subscriptions, sync_events
from close_sms.warehouse.destination import Warehouse
from tests import cli_process
from tests.support import Receiver, cli_command, cli_env, count, free_port, run_cli, until

SECRETS_BEFORE = '# kept as written\n[sources.close_sms]\nhash_key = "k3ep-this-hash-key"\n'


def _webhook(running: Any, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "webhook", "--base-url", running.base_url, *args, api_key=running.api_key, cwd=project
    )


def _secrets(project: Path) -> dict[str, Any]:
    text = (project / ".dlt" / "secrets.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)["sources"]["close_sms"]


def _posts(running: Any, path: str = "/webhook/") -> int:
    return sum(1 for r in running.emu.request_log if r.method == "POST" and r.path.endswith(path))


def test_create_stores_the_key_privately_never_prints_it_and_list_and_delete_manage_it(
    emulator, tmp_path
):
    running = emulator(sms=0)
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "secrets.toml").write_text(SECRETS_BEFORE, encoding="utf-8")
    url = "https://sync.example/webhooks/close"

    created = _webhook(running, tmp_path, "create", "--url", url)
    assert created.returncode == 0, created.stderr
    stored = _secrets(tmp_path)
    key, subscription_id = stored["webhook_signature_key"], stored["webhook_subscription_id"]
    assert bytes.fromhex(key) and key not in created.stdout + created.stderr
    assert subscription_id in created.stdout
    secrets = tmp_path / ".dlt" / "secrets.toml"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    # What the file held before stays, comment included.
    assert stored["hash_key"] == "k3ep-this-hash-key"
    assert secrets.read_text(encoding="utf-8").startswith("# kept as written\n")
    (subscription,) = running.get("/webhook/").json()["data"]
    kinds = [(e["object_type"], e["action"]) for e in subscription["events"]]
    assert subscription["url"] == url
    assert kinds == [(e["object_type"], e["action"]) for e in sync_events()]
    assert "signature_key" not in subscription

    listed = _webhook(running, tmp_path, "list")
    assert listed.returncode == 0
    assert f"{subscription_id}  active  {url}  {len(sync_events())} event types  (this" in (
        listed.stdout
    )

    again = _webhook(running, tmp_path, "create", "--url", "https://other.example/webhooks/close")
    assert again.returncode == 2 and f"subscription {subscription_id} already" in again.stderr
    assert _posts(running) == 1

    deleted = _webhook(running, tmp_path, "delete", subscription_id)
    assert deleted.returncode == 0, deleted.stderr
    assert running.get("/webhook/").json()["data"] == []
    assert set(_secrets(tmp_path)) == {"hash_key"}
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600

    gone = _webhook(running, tmp_path, "delete", subscription_id)
    assert gone.returncode == 2 and f"no webhook subscription {subscription_id}" in gone.stderr
    hostile = _webhook(running, tmp_path, "delete", "../../activity/sms/x")
    assert hostile.returncode == 2 and "is not a webhook subscription id" in hostile.stderr
    assert not any(r.method == "DELETE" and "activity" in r.path for r in running.emu.request_log)


def test_a_bad_url_or_a_missing_key_is_one_line_and_nothing_is_created(emulator, tmp_path):
    running = emulator(sms=0)
    bad = _webhook(running, tmp_path, "create", "--url", "ftp://sync.example/webhooks/close")
    assert (
        bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not an http(s) URL" in (bad.stderr)
    )
    keyless = run_cli("webhook", "--base-url", running.base_url, "list", api_key=None, cwd=tmp_path)
    assert keyless.returncode == 2 and "no Close API key" in keyless.stderr
    assert running.get("/webhook/").json()["data"] == []
    assert not (tmp_path / ".dlt" / "secrets.toml").exists()


def test_a_create_whose_answer_is_lost_is_not_sent_again_and_names_what_close_made(
    emulator, tmp_path
):
    """A POST is not idempotent: after a cut answer it is not repeated (two subscriptions, one
    key lost); the command says which subscription Close made, if any."""
    running = emulator(sms=0)
    running.emu.faults.add("drop", path_prefix="/webhook/", method="POST")
    cut = _webhook(running, tmp_path, "create", "--url", "https://a.example/webhooks/close")
    (made,) = running.get("/webhook/").json()["data"]
    assert cut.returncode == 4 and cut.stderr.count("\n") == 1
    assert f"Close created {made['id']}" in cut.stderr and f"delete {made['id']}`" in cut.stderr
    assert not (tmp_path / ".dlt" / "secrets.toml").exists()

    running.emu.faults.add("503", path_prefix="/webhook/", method="POST")
    refused = _webhook(running, tmp_path, "create", "--url", "https://b.example/webhooks/close")
    assert refused.returncode == 4 and "Close lists no new subscription" in refused.stderr
    assert _posts(running) == 2
    assert len(running.get("/webhook/").json()["data"]) == 1


def test_the_watch_tells_once_when_the_subscription_pauses_and_again_after_it_recovers(
    emulator, tmp_path
):
    running = emulator(sms=0)
    client = CloseClient(running.base_url, running.api_key)
    subscription = create_subscription(client, "https://sync.example/webhooks/close", sync_events())
    path = f"/webhook/{subscription['id']}/"
    warehouse = Warehouse.configure("duckdb", tmp_path / "w.duckdb")
    receiver = Receiver()
    said: list[str] = []
    try:
        from close_sms.app.alerts import Alerts

        watch = SubscriptionWatch(
            client, subscription["id"], warehouse, Alerts(receiver.url), said.append, interval=0
        )

        def set_status(status: str) -> None:
            answer = requests.put(
                running.base_url + path, json={"status": status}, auth=(running.api_key, "")
            )
            assert answer.status_code == 200, answer.text

        watch.check_when_due()
        assert said == [] and read_subscription(warehouse.working_dir)["status"] == "active"
        set_status("paused")
        watch.check_when_due()
        watch.check_when_due()
        assert len(said) == 1 and "is paused" in said[0]
        assert len(receiver.texts()) == 1 and subscription["id"] in receiver.texts()[0]
        assert read_subscription(warehouse.working_dir)["status"] == "paused"
        set_status("active")
        watch.check_when_due()
        set_status("paused")
        watch.check_when_due()
        assert len(said) == 2 and len(receiver.texts()) == 2
        requests.delete(running.base_url + path, auth=(running.api_key, ""))
        watch.check_when_due()
        assert "is deleted" in said[-1]
        assert read_subscription(warehouse.working_dir)["status"] == "deleted"
    finally:
        receiver.stop()


def test_close_retries_a_delivery_while_the_follower_is_down_and_its_doorbell_takes_it_after(
    emulator, tmp_path
):
    running = emulator(
        sms=50,
        seed=19,
        webhook_backoff_base_seconds=0.2,
        webhook_backoff_cap_seconds=0.4,
        consolidation_seconds=0.5,
    )
    port = free_port()
    created = _webhook(
        running, tmp_path, "create", "--url", f"http://127.0.0.1:{port}/webhooks/close"
    )
    assert created.returncode == 0, created.stderr
    subscription_id = _secrets(tmp_path)["webhook_subscription_id"]
    base = next(iter(running.emu.snapshot().values()))
    first = running.emu.create_sms(
        {k: base[k] for k in ("lead_id", "contact_id", "remote_phone", "local_phone")}
        | {"status": "inbox", "direction": "inbound", "text": "while the follower was down"}
    )

    def attempts() -> list[Any]:
        return [d for d in running.emu.webhook_deliveries if d.subscription_id == subscription_id]

    until(lambda: len(attempts()) >= 2, 10)
    assert not any(d.ok for d in attempts())  # nobody listened: Close retried

    database = tmp_path / "w.duckdb"
    follower = cli_process.popen(
        cli_command("follow", "--base-url", running.base_url, "--database", str(database)),
        env=cli_env(
            running.api_key,
            SOURCES__CLOSE_SMS__FOLLOW_INTERVAL="60",
            SOURCES__CLOSE_SMS__WEBHOOK_LISTEN=str(port),
        ),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        until(lambda: any(d.ok for d in attempts()), 30)
        sql = "SELECT count(*) FROM close_sms.sms WHERE id = '{}'"

        def loaded(sms: dict[str, Any]) -> bool:
            try:
                return count(database, sql.format(sms["id"])) == 1
            except Exception:  # the first cycle has not made the table yet
                return False

        until(lambda: loaded(first), 30)
        # A change after the first cycle comes in on the doorbell, long before the next poll.
        second = running.emu.create_sms(
            {k: base[k] for k in ("lead_id", "contact_id", "remote_phone", "local_phone")}
            | {"status": "inbox", "direction": "inbound", "text": "rang the doorbell"}
        )
        until(lambda: loaded(second), 20)
    finally:
        follower.send_signal(signal.SIGTERM)
        _, err = follower.communicate(timeout=30)
    assert follower.returncode == 143, err
    key = _secrets(tmp_path)["webhook_signature_key"]
    assert key not in err and os.environ.get("CLOSE_API_KEY", "\0") not in err


def test_a_subscription_list_that_says_there_is_more_is_a_loud_stop_not_a_loop(emulator):
    """Close allows 40 subscriptions: an answer claiming more than a page (as a `_skip` Close
    ignored would, page after page) stops with one line instead of paging on."""
    running = emulator(sms=0)
    client = CloseClient(running.base_url, running.api_key)
    create_subscription(client, "https://sync.example/webhooks/close", sync_events())
    answered = client.get
    client.get = lambda path, params=None: {**answered(path, params), "has_more": True}
    with pytest.raises(ApiContractError, match="more than 100 subscriptions"):
        list_subscriptions(client)
