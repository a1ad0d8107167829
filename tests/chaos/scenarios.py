"""The chaos scenarios (numbered as in docs/reliability.md). 3 (Kubernetes API faults), 4 (credentials)
and 6 (load) are still to come: each is a class like these, registered in :data:`SCENARIOS`."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from tests.chaos.figures import Figures, percentile
from tests.chaos.harness import FAILOVERS, ChaosConfig, ChaosStack, Failover, Scenario, moment
from tests.e2e.harness import JsonObj, http_json, sim_faults

SIGKILL_GOAL_S: Final = 17.0
GRACEFUL_GOAL_S: Final = 3.0


@dataclass
class KillsScenario:
    """Scenario 1: N SIGKILLs of the current leader at seeded random moments while the workload (and an
    ephemeral NodeGroup) churns; the killed process comes back as the standby."""

    config: ChaosConfig
    name: str = "1-kills"
    ephemeral: bool = True
    done: list[Failover] = field(default_factory=list)

    def disturb(self, stack: ChaosStack) -> None:
        rng = stack.config.rng(f"{self.name}:kills")
        for i in range(self.config.kills):
            time.sleep(rng.uniform(*self.config.kill_gap))
            failover = stack.replicas.fail_over(graceful=False, moment=moment(stack))
            self.done.append(failover)
            print(
                f"[chaos] kill {i + 1}/{self.config.kills} of {failover.victim} during {failover.moment}: "
                f"{failover.successor} acted after {failover.seconds:.1f}s ({failover.first_action})",
                flush=True,
            )

    def calm(self, stack: ChaosStack) -> None:
        pass

    def figures(self, stack: ChaosStack, figures: Figures) -> None:
        moments: Counter[str] = Counter()
        for f in self.done:
            for part in f.moment.split("+"):
                moments[part] += 1
        figures.count(
            self.name,
            "kills",
            len(self.done),
            goal=None,
            detail=f"moments {dict(moments)}; NodeGroup deletions {stack.workload.ephemeral_cycles}",
        )


@dataclass
class FailoverScenario:
    """Scenario 5: leader SIGKILL → the standby's first action (over every kill of the session,
    scenario 1's included), and graceful stop (Lease released) → the same."""

    config: ChaosConfig
    name: str = "5-failover"
    ephemeral: bool = False

    def disturb(self, stack: ChaosStack) -> None:
        rng = stack.config.rng(f"{self.name}:stops")
        for i in range(self.config.graceful_stops):
            time.sleep(rng.uniform(*self.config.kill_gap))
            done = stack.replicas.fail_over(graceful=True, moment=moment(stack))
            print(
                f"[chaos] graceful stop {i + 1}/{self.config.graceful_stops} of {done.victim}: "
                f"{done.successor} acted after {done.seconds:.1f}s ({done.first_action})",
                flush=True,
            )
        if not [f for f in FAILOVERS if not f.graceful]:  # run alone: a few kills of its own
            for _ in range(max(3, self.config.graceful_stops)):
                time.sleep(rng.uniform(*self.config.kill_gap))
                stack.replicas.fail_over(graceful=False, moment=moment(stack))

    def calm(self, stack: ChaosStack) -> None:
        pass

    def figures(self, stack: ChaosStack, figures: Figures) -> None:
        kills = [f.seconds for f in FAILOVERS if not f.graceful]
        stops = [f.seconds for f in FAILOVERS if f.graceful]
        lease = str(self.config.lease)
        figures.latency(
            self.name, "SIGKILL failover", kills, SIGKILL_GOAL_S, detail=f"{len(kills)} kills, {lease}"
        )
        figures.latency(
            self.name, "graceful failover", stops, GRACEFUL_GOAL_S, detail=f"{len(stops)} stops, {lease}"
        )


def vpsie_fault_mix(rate: float) -> list[dict[str, Any]]:
    """Faults on every VPSie route such that about ``rate`` of the calls fail: 5xx (500, 503), 429 with
    Retry-After, an HTML 502, HTTP 200 with ``error: true``, and answers lost after the call was
    carried out (502, 504, 504 with JSON, connection reset); plus seconds of latency on 5 % of calls."""
    failing: list[dict[str, Any]] = [
        {"kind": "error", "status": 500},
        {"kind": "error", "status": 503, "message": "Service Unavailable"},
        {"kind": "rate_limit", "retry_after": 1},
        {"kind": "html_502"},
        {"kind": "error_200", "message": "Simulated failure"},
        {"kind": "reply_lost", "lost_as": "502"},
        {"kind": "reply_lost", "lost_as": "504"},
        {"kind": "reply_lost", "lost_as": "504_json"},
        {"kind": "reply_lost", "lost_as": "reset"},
    ]
    each = 1 - (1 - rate) ** (1 / len(failing))  # independent draws: P(at least one) == rate
    return [{**f, "probability": round(each, 4)} for f in failing] + [
        {"kind": "latency", "seconds": 2.5, "probability": 0.05}
    ]


@dataclass
class VPSieFaultsScenario:
    """Scenario 2: ``fault_rate`` of the VPSie calls fail in every way VPSie fails, for T minutes of
    churn; then the faults stop and the stack must settle clean."""

    config: ChaosConfig
    name: str = "2-vpsie-faults"
    ephemeral: bool = False
    fault_ids: list[int] = field(default_factory=list)
    counter: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    arrivals: int = 0

    def disturb(self, stack: ChaosStack) -> None:
        sim = stack.e2e.sim
        # A zero-second latency fault on every route counts every call that arrives.
        self.counter = sim.add_fault(kind="latency", seconds=0, path="*", method="*")
        for spec in vpsie_fault_mix(self.config.fault_rate):
            self.fault_ids.append(sim.add_fault(path="*", method="*", **spec))
        until = time.monotonic() + self.config.fault_minutes * 60
        while time.monotonic() < until:
            stack.replicas.roles()  # both alive, one leads (a crash under faults fails here)
            time.sleep(5.0)

    def calm(self, stack: ChaosStack) -> None:
        sim = stack.e2e.sim
        faults: list[JsonObj] = sim_faults(sim)
        for fault in faults:
            if fault["id"] == self.counter:
                self.arrivals = int(fault["hits"])
            elif fault["id"] in self.fault_ids:
                key = fault["kind"] + (f" {fault['lost_as']}" if fault["kind"] == "reply_lost" else "")
                key += f" {fault['status']}" if fault["kind"] == "error" else ""
                self.hits[key] = self.hits.get(key, 0) + int(fault["hits"])
        for fault_id in [*self.fault_ids, self.counter]:
            http_json("DELETE", f"{sim.base_url}/_sim/faults/{fault_id}")

    def figures(self, stack: ChaosStack, figures: Figures) -> None:
        failed = sum(n for k, n in self.hits.items() if not k.startswith("latency"))
        rate = failed / self.arrivals if self.arrivals else 0.0
        figures.count(
            self.name,
            "VPSie calls",
            self.arrivals,
            goal=None,
            detail=f"{self.config.fault_minutes:g} min of faults; hits {self.hits}",
        )
        figures.add(
            _rate_figure(self.name, rate, self.config.fault_rate),
        )


def _rate_figure(scenario: str, rate: float, wanted: float) -> Any:
    from tests.chaos.figures import AT_LEAST, Figure

    return Figure(
        scenario,
        "failed VPSie calls %",
        round(rate * 100, 1),
        goal=round(wanted * 100 * 0.66, 1),  # the faults really fired (draws vary around the rate)
        compare=AT_LEAST,
        detail=f"aimed at {wanted * 100:g} %",
    )


def failover_percentiles() -> dict[str, float]:
    kills = [f.seconds for f in FAILOVERS if not f.graceful]
    stops = [f.seconds for f in FAILOVERS if f.graceful]
    return {
        "kill_p50": percentile(kills, 50),
        "kill_p99": percentile(kills, 99),
        "stop_p50": percentile(stops, 50),
        "stop_p99": percentile(stops, 99),
    }


SCENARIOS: Final[dict[str, type[Scenario]]] = {
    "1-kills": KillsScenario,
    "2-vpsie-faults": VPSieFaultsScenario,
    "5-failover": FailoverScenario,
}
"""Scenario classes by name (constructed with a :class:`ChaosConfig`)."""


class Together:
    """Several scenarios on one stack, one after the other (one setup, one settle, one set of checks):
    e.g. scenario 1's kills then scenario 5's graceful stops."""

    def __init__(self, *parts: Scenario) -> None:
        self.parts = parts
        self.name = parts[0].name
        self.ephemeral = any(p.ephemeral for p in parts)

    def disturb(self, stack: ChaosStack) -> None:
        for part in self.parts:
            part.disturb(stack)

    def calm(self, stack: ChaosStack) -> None:
        for part in self.parts:
            part.calm(stack)

    def figures(self, stack: ChaosStack, figures: Figures) -> None:
        for part in self.parts:
            part.figures(stack, figures)
