"""The writer lock: PostgreSQL ends an advisory lock with its session, and a holder that goes on
(a follower's cycles) finds out before it writes again."""

from __future__ import annotations

import pytest

from close_sms.errors import LockLost
from close_sms.warehouse.destination import Warehouse
from close_sms.warehouse.lock import writer_lock
from tests.postgres import terminate_lock_holders


def test_a_lock_lost_with_its_session_stops_its_holder_and_frees_the_dataset(
    postgres, monkeypatch, tmp_path
):
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", postgres)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    warehouse = Warehouse.configure("postgres")
    with writer_lock(warehouse):
        with writer_lock(warehouse):
            pass  # the session answers: still held
        assert terminate_lock_holders(postgres) == 1
        with pytest.raises(LockLost, match="writer lock .* was lost"), writer_lock(warehouse):
            pytest.fail("the block ran without the lock")
    # Left without an error, and the lock is free for the next sync.
    with writer_lock(warehouse):
        pass
