"""The full chaos run, ``make chaos`` (CHAOS_FULL=1): CHAOS_KILLS SIGKILLs (default 100) and
CHAOS_GRACEFUL_STOPS graceful stops (10) with the production Lease timings (CHAOS_LEASE), then
CHAOS_FAULT_MINUTES (10) of VPSie faults. Skipped unless CHAOS_FULL=1."""

from __future__ import annotations

import os

import pytest

from tests.chaos.harness import ChaosConfig, run_scenario
from tests.chaos.scenarios import FailoverScenario, KillsScenario, Together, VPSieFaultsScenario
from tests.e2e.harness import E2E

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("CHAOS_FULL") != "1", reason="the full chaos run: make chaos"),
]

CONFIG = ChaosConfig.from_env("full")
HOURS = 3600


@pytest.mark.timeout(3 * HOURS)
def test_kills_and_failover(e2e: E2E) -> None:
    off = run_scenario(e2e, CONFIG, Together(KillsScenario(CONFIG), FailoverScenario(CONFIG)))
    assert not off, f"figures off goal (replay: CHAOS_SEED={CONFIG.seed}):\n" + "\n".join(off)


@pytest.mark.timeout(1 * HOURS)
def test_vpsie_faults(e2e: E2E) -> None:
    if CONFIG.fault_minutes <= 0:
        pytest.skip("CHAOS_FAULT_MINUTES=0")
    off = run_scenario(e2e, CONFIG, VPSieFaultsScenario(CONFIG))
    assert not off, f"figures off goal (replay: CHAOS_SEED={CONFIG.seed}):\n" + "\n".join(off)
