"""Fixtures of the chaos runs: the e2e suite's (fresh simulated cloud per test, CRDs, cleanup, failure
dumps), and the figures printed last, with the seed that replays the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.figures import REGISTRY
from tests.e2e.conftest import e2e, e2e_crds, pytest_runtest_makereport

__all__ = ["e2e", "e2e_crds", "pytest_runtest_makereport"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REGISTRY.items:
        return
    terminalreporter.section("chaos figures")
    terminalreporter.write_line(REGISTRY.report())
    report = os.environ.get("CHAOS_REPORT")  # `make chaos` prints it again after pytest's last line
    if report:
        Path(report).write_text(REGISTRY.report() + "\n")
