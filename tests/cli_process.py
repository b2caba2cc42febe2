"""`subprocess.Popen` and `run` for `close-sms` runs, forked from `tests/cli_zygote.py`.

Each pytest process starts one zygote, the first time it runs the CLI. Everything else is
`subprocess.Popen`'s own: pipes, `communicate`, timeouts, `send_signal`, `kill`; only the
child's creation and the wait for its status go through the zygote.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ZYGOTE = Path(__file__).with_name("cli_zygote.py")
CLI_MODULE = ("-m", "close_sms.app.cli")


class _Zygote:
    """The zygote of this process, started on first use and stopped at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.process: subprocess.Popen[str] | None = None
        self._path = ""

    def connect(self) -> socket.socket:
        with self._lock:
            if self.process is None or self.process.poll() is not None:
                self._start()
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self._path)
        return connection

    def _start(self) -> None:
        folder = tempfile.mkdtemp(prefix="close-sms-zygote-")
        self._path = os.path.join(folder, "socket")
        root = ZYGOTE.parent.parent
        env = {
            **os.environ,
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "PYTHONPATH": os.pathsep.join(
                str(root / part) for part in (".", "pipelines", "pipelines/close-api-emulator")
            ),
        }
        self.process = subprocess.Popen(
            [sys.executable, str(ZYGOTE), self._path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=root,
            # Its own process group, which its runs join: one signal at exit ends them all.
            start_new_session=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the CLI zygote did not start; see its stderr above")
        atexit.register(_end_group, self.process.pid)


def _end_group(pid: int) -> None:
    """SIGKILL to the zygote and every run it forked that still runs: none outlives the tests."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


_ZYGOTE = _Zygote()
_FORKED_CPU: list[float] = []


def forked_cpu_seconds() -> float:
    """CPU seconds the forked runs of this process have used, for profiling the suite."""
    return sum(_FORKED_CPU)


def zygotes() -> set[int]:
    """The pid of this process's zygote, if it was started: a child that only waits."""
    process = _ZYGOTE.process
    return set() if process is None else {process.pid}


def forks_the_cli(args: Any) -> bool:
    """True for `[sys.executable, "-m", "close_sms.app.cli", ...]`, as `cli_command` makes."""
    return (
        isinstance(args, list | tuple)
        and len(args) >= 3
        and args[0] == sys.executable
        and tuple(args[1:3]) == CLI_MODULE
    )


class CliPopen(subprocess.Popen):
    """A `Popen` of `cli_command(...)` whose child is forked by the zygote.

    Accepts `args`, `env`, `cwd`, `stdin`, `stdout`, `stderr` and `text` (or `encoding`); the
    interpreter options of a fresh process (`executable`, `preexec_fn`, `pass_fds`,
    `start_new_session`…) have no meaning here and are refused.
    """

    def _execute_child(  # type: ignore[override]
        self,
        args: list[str],
        executable: Any,
        preexec_fn: Any,
        close_fds: bool,
        pass_fds: Any,
        cwd: Any,
        env: Any,
        startupinfo: Any,
        creationflags: Any,
        shell: bool,
        p2cread: int,
        p2cwrite: int,
        c2pread: int,
        c2pwrite: int,
        errread: int,
        errwrite: int,
        *rest: Any,
    ) -> None:
        if not forks_the_cli(args) or shell or executable or preexec_fn or pass_fds:
            raise ValueError(f"not a plain close-sms command: {args!r}")
        child_fds = [p2cread, c2pwrite, errwrite]
        fds = [
            fd if fd != -1 else default for fd, default in zip(child_fds, (0, 1, 2), strict=True)
        ]
        umask = os.umask(0)
        os.umask(umask)
        request = {
            "argv": list(args[3:]),
            "env": dict(os.environ if env is None else env),
            "cwd": os.fspath(cwd) if cwd is not None else os.getcwd(),
            "umask": umask,
        }
        self._zygote = _ZYGOTE.connect()
        try:
            socket.send_fds(self._zygote, [json.dumps(request).encode()], fds)
            self._answers = self._zygote.makefile("r")
            self.pid = int(self._answers.readline())
        finally:
            # Popen's own: closes the child's ends of the pipes, never a file the caller passed.
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)
        self._ended = threading.Event()
        self._status: int | None = None
        threading.Thread(target=self._await_status, daemon=True).start()

    def _await_status(self) -> None:
        answer = self._answers.readline().split()
        if answer:
            self._status = int(answer[0])
            _FORKED_CPU.append(float(answer[1]))
        self._zygote.close()
        self._ended.set()

    def _settle(self) -> None:
        if self.returncode is None:
            # A lost zygote is a killed run, as far as the test can know.
            self.returncode = (
                os.waitstatus_to_exitcode(self._status) if self._status is not None else -9
            )

    def _internal_poll(self, *args: Any, **kwargs: Any) -> int | None:  # type: ignore[override]
        if self.returncode is None and self._ended.is_set():
            self._settle()
        return self.returncode

    def _wait(self, timeout: float | None) -> int:  # type: ignore[override]
        if self.returncode is None:
            if not self._ended.wait(timeout):
                raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
            self._settle()
        assert self.returncode is not None
        return self.returncode


def popen(args: list[str], **kwargs: Any) -> subprocess.Popen:
    """`subprocess.Popen(args, ...)`, forked from the zygote when `args` is a CLI command."""
    return (CliPopen if forks_the_cli(args) else subprocess.Popen)(args, **kwargs)


def run(
    args: list[str],
    *,
    input: str | bytes | None = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess:
    """`subprocess.run`, with `popen` in place of `Popen`."""
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with popen(args, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        except BaseException:
            process.kill()
            raise
    completed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check:
        completed.check_returncode()
    return completed
