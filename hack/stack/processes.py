"""Child processes of the stack and the waits over them.

Every process runs in its own session (its pgid is its pid) with its output appended to a log file;
signals go to the whole group, never by name, so only what this library started is touched. Every wait
has a deadline and checks, on every poll, that the processes the caller expects alive still are, so a
crashed autoscaler fails at once with its log tail instead of a timeout.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from hack.devcluster.processes import signal_group

T = TypeVar("T")
STOP_GRACE_S: Final = 10.0
POLL_S: Final = 0.2
HTTP_TIMEOUT_S: Final = 5.0
LOG_TAIL_LINES: Final = 60


class ProcessDied(AssertionError):
    """A process the test needs exited; the message carries its exit code and log tail."""


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline; the message shows the last value seen."""


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Process:
    """One child process in its own session (its pgid is its pid), output appended to ``log``.

    Signals go to the whole group, never by name, so only what this library started is touched.
    """

    def __init__(self, name: str, argv: list[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = dict(env) if env is not None else None
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n=== {datetime.now(UTC).isoformat()} start: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.env,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise ProcessDied(
                f"{self.name} exited with {self.popen.returncode}; last lines of {self.log}:\n{self.tail()}"
            )

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log, lines)

    def kill9(self) -> None:
        """SIGKILL the group: no shutdown code runs, exactly like a node losing power."""
        if self.popen is None or self.popen.poll() is not None:
            return
        signal_group(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_GRACE_S)

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM the group, SIGKILL after ``grace``; the exit code (None if never started)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            signal_group(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                signal_group(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=grace)
        return self.popen.returncode


def cli(*args: str) -> list[str]:
    """``vpsie-autoscaler <args>`` with this interpreter (the installed entry point's module)."""
    return [sys.executable, "-m", "vpsie_autoscaler", *args]


def http_json(method: str, url: str, body: Any = None, timeout: float = HTTP_TIMEOUT_S) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def http_text(url: str, timeout: float = HTTP_TIMEOUT_S) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as err:
        return 0, str(err)


def samples(
    text: str, name: str, labels: Mapping[str, str] | None = None
) -> list[tuple[dict[str, str], float]]:
    want = dict(labels or {})
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and want.items() <= sample.labels.items():
                found.append((dict(sample.labels), float(sample.value)))
    return found


def sample_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    found = samples(text, name, labels)
    return found[0][1] if found else None


def wait_until(
    fetch: Callable[[], T],
    predicate: Callable[[T], Any],
    *,
    timeout: float,
    what: str,
    alive: Iterable[Process] = (),
    interval: float = POLL_S,
) -> T:
    """Poll ``fetch()`` until ``predicate`` holds; fail at once if a process in ``alive`` died."""
    procs = list(alive)
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            proc.check_alive()
        value = fetch()
        if predicate(value):
            return value
        if time.monotonic() >= deadline:
            shown = json.dumps(value, default=str)[:3000]
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {shown}")
        time.sleep(interval)
