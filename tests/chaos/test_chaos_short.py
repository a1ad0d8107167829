"""The short chaos run ``make test`` includes (about 6 minutes on two cores): 10 SIGKILLs of the leader
and 3 graceful stops under a changing workload, then 2 minutes of VPSie faults. ``make chaos`` runs
the full version (``test_chaos_full.py``). CHAOS_SEED replays a run."""

from __future__ import annotations

import pytest

from tests.chaos.harness import ChaosConfig, run_scenario
from tests.chaos.scenarios import FailoverScenario, KillsScenario, Together, VPSieFaultsScenario
from tests.e2e.harness import E2E

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

CONFIG = ChaosConfig.from_env("short")


@pytest.mark.timeout(600)  # a hang guard, not a speed claim
def test_kills_and_failover(e2e: E2E) -> None:
    """Scenarios 1 and 5 on one stack: kills during the churn, then graceful stops."""
    off = run_scenario(e2e, CONFIG, Together(KillsScenario(CONFIG), FailoverScenario(CONFIG)))
    assert not off, f"figures off goal (replay: CHAOS_SEED={CONFIG.seed}):\n" + "\n".join(off)


@pytest.mark.timeout(600)  # a hang guard, not a speed claim
def test_vpsie_faults(e2e: E2E) -> None:
    """Scenario 2: about 30 % of the VPSie calls fail, in every way VPSie fails."""
    off = run_scenario(e2e, CONFIG, VPSieFaultsScenario(CONFIG))
    assert not off, f"figures off goal (replay: CHAOS_SEED={CONFIG.seed}):\n" + "\n".join(off)
