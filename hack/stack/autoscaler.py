"""The autoscaler as a process: ``vpsie-autoscaler run`` against the local cluster and the simulator.

Restartable and killable; each start takes fresh loopback ports for metrics and health, and short
Lease timings so a killed leader hands over within seconds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from hack.devcluster.cluster import free_port
from hack.stack.cloudsim import SIM_CLIENT_ID, SIM_CLIENT_SECRET, CloudSim
from hack.stack.processes import Process, cli, http_text, sample_value, samples, wait_until

AUTOSCALER_READY_S: Final = 60.0
LEADER_S: Final = 30.0
SCAN_INTERVAL_S: Final = 2.0
# A killed leader's Lease must run out before a new process leads: short Lease, fast hand-over.
LEASE_DURATION_S: Final = 4.0
RENEW_DEADLINE_S: Final = 3.0
RETRY_PERIOD_S: Final = 0.5


@dataclass
class Autoscaler:
    """``vpsie-autoscaler run`` against the cluster and the simulator; restartable, killable."""

    workdir: Path
    name: str
    kubeconfig: Path
    sim: CloudSim
    namespace: str  # of the leader-election Lease
    lease_id: str
    dry_run: bool = False
    expander: str | None = None
    scan_interval: float = SCAN_INTERVAL_S
    extra_args: tuple[str, ...] = ()
    starts: int = 0
    metrics_port: int = 0
    health_port: int = 0
    process: Process | None = None
    history: list[Process] = field(default_factory=list)

    def argv(self) -> list[str]:
        args = [
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            self.namespace,
            "--vpsie-base-url",
            self.sim.base_url,
            "--vpsie-client-id",
            SIM_CLIENT_ID,
            "--metrics-bind-address",
            f"127.0.0.1:{self.metrics_port}",
            "--health-probe-bind-address",
            f"127.0.0.1:{self.health_port}",
            "--leader-election-id",
            self.lease_id,
            "--lease-duration",
            str(LEASE_DURATION_S),
            "--renew-deadline",
            str(RENEW_DEADLINE_S),
            "--retry-period",
            str(RETRY_PERIOD_S),
            "--scan-interval",
            str(self.scan_interval),
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "--dry-run",
            "true" if self.dry_run else "false",
        ]
        if self.expander:
            args += ["--expander", self.expander]
        return cli(*args, *self.extra_args)

    def start(self) -> Autoscaler:
        """Start a new process (fresh ports each time: a killed one may leave its sockets behind)."""
        self.metrics_port = free_port(f"e2e-metrics-{self.name}-{self.starts}")
        self.health_port = free_port(f"e2e-health-{self.name}-{self.starts}")
        env = {**os.environ, "VPSIE_AUTOSCALER_VPSIE_CLIENT_SECRET": SIM_CLIENT_SECRET}
        env.pop("VPSIE_AUTOSCALER_KUBECONFIG", None)
        self.process = Process(self.name, self.argv(), self.workdir / f"{self.name}.log", env)
        self.history.append(self.process)
        self.process.start()
        self.starts += 1
        return self

    @property
    def proc(self) -> Process:
        assert self.process is not None, f"{self.name} was never started"
        return self.process

    def kill9(self) -> None:
        self.proc.kill9()

    def stop(self) -> int | None:
        return self.process.stop() if self.process else None

    def restart(self) -> Autoscaler:
        self.stop()
        return self.start()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def wait_ready(self, timeout: float = AUTOSCALER_READY_S) -> None:
        """Until ``/readyz`` answers 200 (caches synced)."""
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        wait_until(
            lambda: http_text(url)[0],
            lambda code: code == 200,
            timeout=timeout,
            what=f"{self.name} /readyz",
            alive=[self.proc],
        )

    def metrics(self) -> str:
        code, text = http_text(self.metrics_url)
        if code != 200:
            self.proc.check_alive()
            raise AssertionError(f"{self.metrics_url} answered {code}: {text[:500]}")
        return text

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The value of one sample (``name`` as exposed, e.g. ``..._total``), None when absent."""
        return sample_value(self.metrics(), name, labels)

    def metric_sum(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The sum of every sample named ``name`` whose labels include ``labels``."""
        return sum(v for _, v in samples(self.metrics(), name, labels))

    def is_leader(self) -> bool:
        return bool(self.metric("leader_election_master_status"))

    def wait_leader(self, timeout: float = LEADER_S) -> None:
        wait_until(self.is_leader, bool, timeout=timeout, what=f"{self.name} to lead", alive=[self.proc])
