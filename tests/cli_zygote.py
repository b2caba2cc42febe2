"""A process that has imported `close-sms` once and forks a fresh CLI run for each request.

A new interpreter spends about 1.5 s of CPU importing dlt, DuckDB, pyarrow and pandas and
loading ICU's time zones before the CLI reads its first argument; the suite starts hundreds of
runs, so that import alone would take minutes of CI on two cores. Each run here is still its own
process, with its own argv, environment, working folder, umask and standard streams, killed,
stopped and waited for like any other; only the imports are shared. What happens at import
(telemetry, the entry points) is tested with real interpreters (`tests/app/test_network.py`,
`tests/test_packaging.py`).

Run as `python tests/cli_zygote.py SOCKET`. A request on the socket is one JSON message
(`argv`, `env`, `cwd`, `umask`) carrying the run's stdin, stdout and stderr as file descriptors;
the answer is two lines: the run's pid, then its wait status and CPU seconds once it has
ended.
"""

from __future__ import annotations

import atexit
import faulthandler
import importlib
import json
import os
import random
import signal
import socket
import sys
from typing import NoReturn

import duckdb
from dlt.common.configuration.container import Container

from close_sms.app.cli import entry

# Imported here, once, so that no run pays for them: what a sync, a status or a report imports.
WARM_MODULES = (
    "close_sms.app.runner",
    "close_sms.app.report",
    "dlt.common.libs.pyarrow",
    "dlt.common.libs.sql_alchemy_compat",
    "dlt.destinations.impl.duckdb.duck",
    "dlt.destinations.impl.duckdb.sql_client",
    "dlt.destinations.impl.postgres.postgres",
    "dlt.destinations.insert_job_client",
    "dlt.normalize",
    "dlt.load",
    "pandas",
)


def _warm() -> None:
    for name in WARM_MODULES:
        importlib.import_module(name)
    # ICU's time zones load once a process, on the first `SET TimeZone` (about 0.5 s of CPU).
    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")
    connection.close()


def _run_cli(request: dict, fds: list[int]) -> NoReturn:
    """In the forked child: become the CLI run the request describes, and end as it ends."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, 65536)
    os.umask(request["umask"])
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    random.seed()
    # `kill -USR1 PID` prints every thread's stack to the run's stderr: how to see where it hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    Container.reset_main_thread()
    sys.argv = ["close-sms", *request["argv"]]
    try:
        entry()
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except KeyboardInterrupt:
        # As an interpreter ends on an uncaught Ctrl-C: by SIGINT itself.
        _shut_down()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    _leave(code)


def _exit_status(code: object) -> int:
    """The exit status `sys.exit(code)` gives an interpreter."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def _leave(code: int) -> NoReturn:
    """The interpreter's exit, short of its C++ static destructors: `import duckdb` starts a
    thread, which the fork did not copy, and DuckDB's destructor would abort on joining it."""
    flushed = _shut_down()
    os._exit(code if flushed or code else 120)


def _shut_down() -> bool:
    """atexit's handlers, then the standard streams flushed; False if a flush failed."""
    atexit._run_exitfuncs()
    flushed = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            flushed = False
    return flushed


def _serve_one(connection: socket.socket) -> None:
    """In a forked waiter: fork the run, answer its pid, wait for it, answer its status."""
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    request = json.loads(message)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        connection.close()
        _run_cli(request, fds)
    for fd in fds:
        os.close(fd)
    connection.sendall(f"{pid}\n".encode())
    _, status, usage = os.wait4(pid, 0)
    connection.sendall(f"{status} {usage.ru_utime + usage.ru_stime}\n".encode())
    connection.close()
    os._exit(0)


def main(path: str) -> None:
    _warm()
    # Waiters are reaped by the kernel; each waiter waits for its own run.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            _serve_one(connection)
        connection.close()


if __name__ == "__main__":
    main(sys.argv[1])
