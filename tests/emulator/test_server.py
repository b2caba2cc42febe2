"""The HTTP server around the emulator: keep-alive connections and a prompt stop."""

from __future__ import annotations

import http.client
import threading
from urllib.parse import urlsplit

import pytest
import requests

from close_api_emulator import DEMO_API_KEY, Emulator, EmulatorServer


def _connection(server: EmulatorServer) -> http.client.HTTPConnection:
    url = urlsplit(server.base_url)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=10)


def _auth_header() -> dict[str, str]:
    session = requests.Session()
    session.auth = (DEMO_API_KEY, "")
    prepared = session.prepare_request(requests.Request("GET", "http://x/"))
    return {"Authorization": prepared.headers["Authorization"]}


def _stop_returns(server: EmulatorServer) -> bool:
    """Whether server.stop() returned (given time enough for a loaded machine)."""
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(timeout=30)
    return not stopper.is_alive()


def test_one_connection_carries_a_session_s_requests(emulator):
    run = emulator(sms=300)
    conn = _connection(run.server)
    path = urlsplit(run.base_url).path
    conn.request("GET", f"{path}/activity/sms/?_limit=100", headers=_auth_header())
    first = conn.getresponse()
    assert first.status == 200 and first.read() and not first.will_close
    sock = conn.sock
    for skip in (100, 200):
        conn.request("GET", f"{path}/activity/sms/?_limit=100&_skip={skip}", headers=_auth_header())
        response = conn.getresponse()
        assert response.status == 200 and response.read()
        assert conn.sock is sock  # http.client reconnects only when the server closed it
    conn.close()


def test_requests_session_reuses_its_connection(emulator):
    run = emulator(sms=300)
    session = run.session()
    for skip in (0, 100, 200):
        assert session.get(f"{run.base_url}/activity/sms/?_skip={skip}", timeout=10).ok
    pools = session.get_adapter(run.base_url).poolmanager.pools
    # urllib3's pool container refuses plain iteration; keys() is its way.
    [pool] = [pools[key] for key in pools.keys()]  # noqa: SIM118
    [conn] = [conn for conn in pool.pool.queue if conn is not None]
    # http.client drops the socket of a response that closes its connection: it is still open.
    assert conn.sock is not None and conn.is_connected


def test_stop_is_prompt_with_an_idle_kept_alive_connection():
    server = EmulatorServer(Emulator()).start()
    conn = _connection(server)
    conn.request("GET", urlsplit(server.base_url).path + "/me/", headers=_auth_header())
    assert conn.getresponse().read()
    assert _stop_returns(server)
    # The kept-alive connection was closed with the server: it serves nothing more.
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        conn.request("GET", urlsplit(server.base_url).path + "/me/", headers=_auth_header())
        conn.getresponse()


def test_stop_is_prompt_with_a_hang_in_progress_on_a_kept_alive_connection():
    emu = Emulator()
    server = EmulatorServer(emu).start()
    session = requests.Session()
    session.auth = (DEMO_API_KEY, "")
    assert session.get(server.base_url + "/me/", timeout=10).ok
    emu.faults.add("hang")
    outcome: list[object] = []
    hanging = threading.Thread(
        target=lambda: outcome.append(_status_or_error(session, server.base_url + "/me/"))
    )
    hanging.start()
    for _ in range(3000):  # until the request is hanging (the fault taken), 30 s at most
        if emu.faults.injected["hang"]:
            break
        threading.Event().wait(0.01)
    assert emu.faults.injected["hang"] == 1
    assert _stop_returns(server)
    hanging.join(timeout=30)
    # Released by the stop: the hung request ends with a 503 or a closed connection.
    assert outcome and outcome[0] in (503, "ConnectionError")


def _status_or_error(session: requests.Session, url: str) -> int | str:
    try:
        return session.get(url, timeout=60).status_code
    except requests.exceptions.ConnectionError:
        return "ConnectionError"
