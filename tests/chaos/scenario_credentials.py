"""Scenario 4: VPSie credentials wrong at start, fixed, then rotated under churn (docs/reliability.md).

Both replicas run with ``--vpsie-credentials-dir`` (the mounted Secret of the chart; it takes
precedence over the e2e harness's client id/secret). The simulator is restarted before the stack
with two static API tokens (``api_tokens``), so a rotation from one to the other can be made
without restarting it. The simulator cannot accept a new token at run time nor revoke one (its
static tokens come from its config file; ``/_sim/tokens/expire`` only expires login tokens): the old
token stays valid after the rotation, so what is proven is that the switch itself fails no call.

1. **wrong at start**: ``apiToken`` is a token VPSie does not know. Both NodeGroups get
   ``CloudError=True`` and a ``CloudError`` Event, both processes stay up and ready (``/readyz``
   200), nothing restarts; the workload's pods stay pending.
2. **fixed**: the file is replaced (atomically, as the kubelet swaps a Secret) by a valid token; with
   the workload frozen, the time until every pod has its node and both groups' ``CloudError`` is
   False — no process restarted.
3. **rotated mid-churn**: while the workload churns, the file is replaced by the second token; every
   VPSie call of both replicas from then on succeeds (their ``vpsie_autoscaler_vpsie_api_requests_total``
   counts no code outside 2xx), and both log ``vpsie.credentials_updated``.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml

from tests.chaos.figures import AT_LEAST, AT_MOST, Figure, Figures
from tests.chaos.harness import ChaosConfig, ChaosStack
from tests.chaos.scenario_kube_faults import SupervisedStack, wait_converged
from tests.e2e.harness import E2E, http_text, samples
from vpsie_autoscaler.api.nodegroup import CONDITION_CLOUD_ERROR
from vpsie_autoscaler.vpsie.credentials import API_TOKEN_FILE

WRONG_TOKEN: Final = "chaos-wrong-token"
TOKENS: Final = ("chaos-token-a", "chaos-token-b")
CLOUD_ERROR_S: Final = 60.0
FIXED_GOAL_S: Final = 60.0  # 10 s credential poll + the groups' back-off (at most 20 s) + a launch
ROTATED_S: Final = 30.0
REQUESTS_METRIC: Final = "vpsie_autoscaler_vpsie_api_requests_total"
ROTATED_MARK: Final = "vpsie.credentials_updated"


def restart_sim_with_tokens(e2e: E2E, tokens: tuple[str, ...]) -> None:
    """Restart the (still empty) simulator with static API tokens in its config."""
    e2e.sim.stop()
    config = yaml.safe_load(e2e.sim.config_path.read_text())
    config["api_tokens"] = list(tokens)
    e2e.sim.config_path.write_text(yaml.safe_dump(config))
    e2e.sim.start()


def write_token(directory: Path, token: str) -> None:
    """Replace ``apiToken`` atomically (a rename: readers see the old or the new file, never half)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory.parent, prefix=".token-")
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, directory / API_TOKEN_FILE)


def credentials_stack(e2e: E2E, config: ChaosConfig, directory: Path, scenario: str) -> SupervisedStack:
    return SupervisedStack(e2e, config, scenario, extra=("--vpsie-credentials-dir", str(directory)))


def failed_calls(stack: ChaosStack) -> dict[str, float]:
    """Per replica: VPSie calls answered outside 2xx so far (its metrics; 0 when unreachable)."""
    found: dict[str, float] = {}
    for scaler in stack.replicas.all:
        try:
            text = scaler.metrics()
        except (AssertionError, OSError):
            continue
        found[scaler.name] = sum(
            v for labels, v in samples(text, REQUESTS_METRIC) if not labels.get("code", "").startswith("2")
        )
    return found


@dataclass
class CredentialsScenario:
    config: ChaosConfig
    directory: Path
    rotate_churn_s: float = 20.0
    rotations: int = 1
    name: str = "4-credentials"
    ephemeral: bool = False
    checks: list[Figure] = field(default_factory=list)
    log_offsets: dict[str, int] = field(default_factory=dict)

    def _add(self, name: str, value: float, goal: float, compare: object = AT_MOST, detail: str = "") -> None:
        self.checks.append(
            Figure(self.name, name, float(value), goal, compare=compare, detail=detail)  # type: ignore[arg-type]
        )

    def _conditions(self, stack: ChaosStack) -> dict[str, str]:
        found = {}
        for group in stack.groups:
            conds = (stack.e2e.get_nodegroup(group).get("status") or {}).get("conditions") or []
            found[group] = next((c["status"] for c in conds if c.get("type") == CONDITION_CLOUD_ERROR), "")
        return found

    def disturb(self, stack: ChaosStack) -> None:
        assert isinstance(stack, SupervisedStack)
        e2e = stack.e2e
        # 1. wrong at start (the directory was written before the replicas started)
        deadline = time.monotonic() + CLOUD_ERROR_S
        conds: dict[str, str] = {}
        while time.monotonic() < deadline:
            conds = self._conditions(stack)
            if all(v == "True" for v in conds.values()):
                break
            time.sleep(1.0)
        self._add(
            "groups with CloudError=True (wrong token)",
            sum(v == "True" for v in conds.values()),
            len(stack.groups),
            AT_LEAST,
            detail=str(conds),
        )
        events = {g: len(e2e.nodegroup_events(g, "CloudError")) for g in stack.groups}
        self._add(
            "groups with a CloudError Event",
            sum(1 for n in events.values() if n),
            len(stack.groups),
            AT_LEAST,
            detail=str(events),
        )
        not_ready = []
        for scaler in stack.replicas.all:
            code, _ = http_text(f"http://127.0.0.1:{scaler.health_port}/readyz")
            if code != 200 or not scaler.proc.alive():
                not_ready.append(f"{scaler.name}: /readyz {code}, alive {scaler.proc.alive()}")
        self._add("replicas not ready (wrong token)", len(not_ready), 0, detail="; ".join(not_ready))
        pending = sum(
            1
            for p in e2e.client.list_objects(f"/api/v1/namespaces/{e2e.namespace}/pods")
            if (p.get("status") or {}).get("phase") != "Running"
        )
        self._add(
            "pods waiting for capacity (wrong token)", pending, 1, AT_LEAST, detail="the workload needs nodes"
        )

        # 2. fixed: scaling resumes, no restart
        stack.pause_churn()
        fixed_at = time.monotonic()
        write_token(self.directory, TOKENS[0])
        seconds, last = wait_converged(stack, fixed_at)
        cleared = self._conditions(stack)
        self.checks.append(
            Figure(
                self.name,
                "every pod has its node after the fix",
                seconds,
                FIXED_GOAL_S,
                unit="s",
                detail=last or f"restarts so far {len(stack.supervisor.restarts)}",
            )
        )
        wait_s = 0.0
        while any(v == "True" for v in cleared.values()) and wait_s < 30:
            time.sleep(1.0)
            wait_s += 1.0
            cleared = self._conditions(stack)
        self._add(
            "groups with CloudError=True (fixed)",
            sum(v == "True" for v in cleared.values()),
            0,
            detail=str(cleared),
        )
        stack.resume_churn()

        # 3. rotation(s) mid-churn
        time.sleep(self.rotate_churn_s / 2)
        before = failed_calls(stack)
        switches = 0
        shown: list[str] = []
        for i in range(self.rotations):
            for scaler in stack.replicas.all:
                self.log_offsets[scaler.name] = scaler.proc.log.stat().st_size
            write_token(self.directory, TOKENS[(i + 1) % len(TOKENS)])
            deadline = time.monotonic() + ROTATED_S
            switched: list[str] = []
            while time.monotonic() < deadline:
                switched = [s.name for s in stack.replicas.all if self._rotated(s.proc.log, s.name)]
                if len(switched) == len(stack.replicas.all):
                    break
                time.sleep(1.0)
            switches += len(switched)
            shown.append(f"rotation {i + 1}: {switched}")
            time.sleep(self.rotate_churn_s / 2)
        after = failed_calls(stack)
        failed = {n: after.get(n, math.nan) - before.get(n, 0.0) for n in after}
        self._add(
            "replica switches to the new token",
            switches,
            len(stack.replicas.all) * self.rotations,
            AT_LEAST,
            detail="; ".join(shown),
        )
        self._add(
            "failed VPSie calls after the rotation",
            sum(failed.values()) if failed else math.nan,
            0,
            detail=f"per replica {failed} (non-2xx codes of {REQUESTS_METRIC})",
        )

    def _rotated(self, log: Path, name: str) -> bool:
        with contextlib.suppress(OSError), log.open("rb") as f:
            f.seek(self.log_offsets.get(name, 0))
            return ROTATED_MARK.encode() in f.read()
        return False

    def calm(self, stack: ChaosStack) -> None:
        pass

    def figures(self, stack: ChaosStack, figures: Figures) -> None:
        for fig in self.checks:
            figures.add(fig)
        if isinstance(stack, SupervisedStack):
            figures.count(
                self.name,
                "replica restarts",
                len(stack.supervisor.restarts),
                detail=stack.supervisor.summary() or "none",
            )
