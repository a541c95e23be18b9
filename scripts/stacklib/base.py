"""What every local service shares: where its files live, readiness waits, daemons.

A service is a background process known by a pid file under ``var/`` and a marker in its
command line, so ``stop`` never ends a process the stack did not start (a recycled pid).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VAR = Path(os.environ.get("SPOOL_VAR_DIR", ROOT / "var")).resolve()
CACHE = VAR / "cache"
HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A service could not be set up or did not become ready; the text says what to do."""


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def wait_until(what: str, check, deadline_s: float, interval_s: float = 0.25):
    """Call ``check`` until it returns a truthy value or the deadline passes.

    ``check`` may raise; the last error is reported when the deadline passes.
    """
    end = time.monotonic() + deadline_s
    last_err: Exception | None = None
    while time.monotonic() < end:
        try:
            result = check()
        except Exception as exc:  # noqa: BLE001 - readiness probes fail in many ways
            last_err = exc
        else:
            if result:
                return result
        time.sleep(interval_s)
    raise StackError(f"{what} not ready after {deadline_s:.0f}s: {last_err!r}")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclasses.dataclass
class Daemon:
    """A background process we started, known by its pid file and a command-line marker."""

    name: str
    pid_file: Path
    marker: str

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid_alive(pid) and self.marker in cmdline(pid):
            return pid
        return None

    def spawn(self, argv: list[str], log_file: Path, env: dict | None = None) -> int:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                cwd=str(self.pid_file.parent),
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self, deadline_s: float = 60) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        try:
            wait_until(f"{self.name} exit", lambda: not pid_alive(pid), deadline_s)
        except StackError:
            log(f"{self.name} (pid {pid}) ignored SIGTERM for {deadline_s:.0f}s; sending SIGKILL")
            os.kill(pid, signal.SIGKILL)
            wait_until(f"{self.name} exit", lambda: not pid_alive(pid), 10)
        self.pid_file.unlink(missing_ok=True)
        return True
