"""``make devcluster`` / ``make devcluster-down``: a local control plane that outlives the command.

``up`` starts the cluster in ``.devcluster/run/``, waits until it is fully ready, writes
``.devcluster/kubeconfig``, links the tools into ``.devcluster/bin/`` and records each component's
pid, binary and kernel start time in ``.devcluster/state.json``; then it exits and leaves the
components running (each in its own session, so the shell's exit does not reach them). ``down``
stops exactly the recorded process groups, after checking each pid still belongs to the recorded
process. ``status`` reports whether they run and whether the apiserver is ready.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from hack.devcluster.client import ApiError, DevKubeClient
from hack.devcluster.cluster import BINARIES, DevCluster, find_binaries
from hack.devcluster.processes import ProcessRecord

DEFAULT_DIR = Path(".devcluster")
STATE_FILE = "state.json"


def _state_path(root: Path) -> Path:
    return root / STATE_FILE


def _load_state(root: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(_state_path(root).read_text())
    except FileNotFoundError:
        return None
    return data


def _records(state: dict[str, Any]) -> list[ProcessRecord]:
    return [ProcessRecord.from_json(p) for p in state.get("processes", [])]


def _apiserver_ready(kubeconfig: Path) -> bool:
    try:
        DevKubeClient.from_kubeconfig(kubeconfig).get("/readyz")
    except (OSError, ValueError, ApiError):
        return False
    return True


def _healthy(root: Path, state: dict[str, Any]) -> bool:
    records = _records(state)
    return bool(records) and all(r.is_running() for r in records) and _apiserver_ready(root / "kubeconfig")


def _stop_recorded(state: dict[str, Any]) -> list[str]:
    stopped = []
    for rec in reversed(_records(state)):
        if rec.stop():
            stopped.append(rec.name)
    return stopped


def _link_tools(root: Path, bin_dir: Path) -> None:
    links = root / "bin"
    links.mkdir(parents=True, exist_ok=True)
    for name in BINARIES:
        link = links / name
        link.unlink(missing_ok=True)
        link.symlink_to(bin_dir / name)


def up(root: Path) -> int:
    state = _load_state(root)
    if state is not None:
        if _healthy(root, state):
            print(f"devcluster already running at {state['api_url']}")
            print(f"export KUBECONFIG={(root / 'kubeconfig').resolve()}")
            return 0
        stale = _stop_recorded(state)
        print(f"previous devcluster was not healthy; stopped {stale or 'nothing'}", file=sys.stderr)
        _state_path(root).unlink()
    bin_dir = find_binaries()
    if bin_dir is None:
        print("devcluster binaries are not built: run `make devcluster-build`", file=sys.stderr)
        return 1
    workdir = root / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    began = time.monotonic()
    cluster = DevCluster(bin_dir, workdir.resolve())
    handle = cluster.start()  # on failure this stops what it started and raises with the log tail
    kubeconfig = root / "kubeconfig"
    shutil.copyfile(handle.kubeconfig, kubeconfig)
    kubeconfig.chmod(0o600)
    _link_tools(root, bin_dir)
    records = cluster.detach()
    state = {
        "api_url": handle.api_url,
        "bin_dir": str(bin_dir),
        "workdir": str(workdir.resolve()),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "start_seconds": round(time.monotonic() - began, 2),
        "timings": {k: round(v, 2) for k, v in cluster.timings.items()},
        "processes": [r.to_json() for r in records],
    }
    _state_path(root).write_text(json.dumps(state, indent=2) + "\n")
    version = handle.client.version().get("gitVersion", "?")
    print(f"devcluster {version} ready at {handle.api_url} in {state['start_seconds']}s")
    print(f"logs: {workdir / 'logs'}   tools: {root / 'bin'}")
    print(f"export KUBECONFIG={kubeconfig.resolve()}")
    return 0


def down(root: Path) -> int:
    state = _load_state(root)
    if state is None:
        print("devcluster is not running (no state file)")
        return 0
    stopped = _stop_recorded(state)
    _state_path(root).unlink()
    print(f"devcluster stopped: {', '.join(stopped) if stopped else 'no recorded process was running'}")
    return 0


def status(root: Path) -> int:
    state = _load_state(root)
    if state is None:
        print("devcluster is not running (no state file)")
        return 1
    for rec in _records(state):
        print(f"{rec.name:24} pid {rec.pid:<8} {'running' if rec.is_running() else 'NOT RUNNING'}")
    ready = _apiserver_ready(root / "kubeconfig")
    print(f"apiserver {state['api_url']}: {'ready' if ready else 'NOT READY'}")
    return 0 if _healthy(root, state) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="devcluster", description=__doc__)
    ap.add_argument("command", choices=("up", "down", "status"))
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state directory (default .devcluster)")
    args = ap.parse_args(argv)
    root: Path = args.dir
    root.mkdir(parents=True, exist_ok=True)
    commands = {"up": up, "down": down, "status": status}
    return commands[args.command](root)


if __name__ == "__main__":
    sys.exit(main())
