"""Child processes of the local stack and tests: started in their own session, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class ProcessError(RuntimeError):
    """A child process exited early or never became ready; the message carries its log tail."""


@dataclass
class Child:
    """A process we started, with the log file that holds its stdout and stderr."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start `argv` in a new session (so stopping it takes its children too), logging to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    return Child(name, popen, log_path)


def stop_pid(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left after `grace_s`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(child: Child, grace_s: float = 10.0) -> int | None:
    """Stop `child` and its process group; its exit code, or None if it had to be killed."""
    stop_pid(child.pid, grace_s)
    try:
        return child.popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still counts as alive to killpg; reap it if it is ours.
    try:
        waited, _ = os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        waited = 0
    if waited == pgid:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
    return True


def wait_http(
    url: str,
    child: Child | None = None,
    timeout_s: float = 60.0,
    expect_status: int = 200,
    expect_body: bytes | None = None,
) -> None:
    """Poll `url` until it answers `expect_status`; fail fast, with the log tail, if `child` exits."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise ProcessError(
                f"{child.name} exited with code {child.popen.returncode} before {url} was ready:\n"
                f"{child.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = response.read()
                if response.status == expect_status and (
                    expect_body is None or expect_body in body
                ):
                    return
                last_error = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last_error = f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            last_error = str(error)
        time.sleep(0.1)
    tail = f"\n{child.log_tail()}" if child is not None else ""
    raise ProcessError(f"{url} not ready after {timeout_s:.0f}s ({last_error}){tail}")


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - 64 * 1024))
            text = log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
