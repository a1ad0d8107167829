"""Starting, identifying and stopping the control plane's processes, and only ours.

Every component runs in its own session (``start_new_session=True``), so its process group id is
its pid and a signal to that group reaches the component and anything it spawned, never the shell
or pytest that started it (the same approach as envtest's ``process.go``). A group recorded in
``.devcluster/state.json`` is signalled only after checking that the pid still runs the recorded
binary and was started at the recorded time, so a reused pid is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

# SIGTERM first: etcd and kube-apiserver shut down cleanly within a second or two.
STOP_GRACE_S = 10.0
CMDLINE_SETTLE_S: Final = 0.5
KILL_WAIT_S = 5.0
_POLL_S = 0.05
# /proc/<pid>/stat: field 22 (1-based) is the start time in clock ticks since boot; fields after the
# parenthesised command name start at field 3.
_STAT_STARTTIME_INDEX = 22 - 3


def start_ticks(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[_STAT_STARTTIME_INDEX])


def _exe_argv0(pid: int) -> str | None:
    """argv[0] of ``pid``. A process that has just exec'd can show an empty ``/proc/<pid>/cmdline``
    for a moment (its new memory is still being set up), so an empty read is retried briefly rather
    than taken as "another program"."""
    deadline = time.monotonic() + CMDLINE_SETTLE_S
    while True:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if raw or time.monotonic() >= deadline:
            return raw.split(b"\0", 1)[0].decode()
        time.sleep(0.002)  # polling /proc, bounded by CMDLINE_SETTLE_S


@dataclass(frozen=True)
class ProcessRecord:
    """What identifies one of our component processes across invocations of the CLI."""

    name: str
    pid: int
    argv0: str
    start_ticks: int
    log: str

    @classmethod
    def of(cls, name: str, proc: subprocess.Popen[bytes], log: Path) -> ProcessRecord:
        ticks = start_ticks(proc.pid)
        if ticks is None:
            raise RuntimeError(f"{name} (pid {proc.pid}) exited right after start; see {log}")
        return cls(name=name, pid=proc.pid, argv0=str(proc.args[0]), start_ticks=ticks, log=str(log))  # type: ignore[index]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessRecord:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            argv0=str(data["argv0"]),
            start_ticks=int(data["start_ticks"]),
            log=str(data["log"]),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def is_running(self) -> bool:
        """True only if the pid is alive, runs the recorded binary and started at the recorded time."""
        return start_ticks(self.pid) == self.start_ticks and _exe_argv0(self.pid) == self.argv0

    def stop(self, grace: float = STOP_GRACE_S) -> bool:
        """SIGTERM the recorded process group, SIGKILL after ``grace``. False if it was not ours/running."""
        if not self.is_running():
            return False
        signal_group(self.pid, signal.SIGTERM)
        if _wait_until(lambda: not self.is_running(), grace):
            return True
        signal_group(self.pid, signal.SIGKILL)
        _wait_until(lambda: not self.is_running(), KILL_WAIT_S)
        return True


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(_POLL_S)
    return bool(cond())


def stop_popen(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_S) -> None:
    """Stop a child we started ourselves (its own session) and reap it."""
    if proc.poll() is not None:
        return
    signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=KILL_WAIT_S)
