"""What a start of ``vpsie-autoscaler run`` loads: optional parts stay out of memory until used.

Every module imported at start stays resident for the life of the controller (idle RSS) and is paid
for on every start. Sentry is opt-in, and the JSON logs a deployed controller writes need neither
rich nor pygments, so a normal start must not load them. Each check runs in a fresh interpreter:
this test process has long imported everything.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.fake_sentry import FakeSentry
from tests.support.wait import eventually

# The real entry point, on a kubeconfig that does not exist: settings, logging, Sentry (if a DSN is
# set), then everything `serve` imports (kube client, manager, controllers' setup) before the client
# fails to configure and `run` exits 1.
START = """
import json, sys
from vpsie_autoscaler.cli import main
rc = main(sys.argv[1:])
loaded = sorted(m for m in {watched!r} if m in sys.modules)
active = "sentry_sdk" in sys.modules and sys.modules["sentry_sdk"].get_client().is_active()
try:
    import rich  # hidden from structlog only while it is imported, never from anyone else
    rich_importable = True
except ImportError:
    rich_importable = False
print(json.dumps({{"rc": rc, "loaded": loaded, "sentry_active": active, "rich_importable": rich_importable}}))
"""
OPTIONAL = ("sentry_sdk", "rich", "pygments")
PROOF_OF_PATH = (
    "vpsie_autoscaler.kube",
    "vpsie_autoscaler.runtime.manager",
    "vpsie_autoscaler.controllers.setup",
)

# Importing the Sentry module (for its scrubbing, or to ask whether reporting is on) is not opting in.
SENTRY_MODULE = """
import json, sys
from vpsie_autoscaler.observability import sentry
off = not sentry.enabled()
sentry.flush()
sentry.shutdown()
print(json.dumps({"off": off, "sentry_sdk": "sentry_sdk" in sys.modules}))
"""


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VPSIE_", "SENTRY_"))}
    return {**env, **extra}


def _start_args(tmp_path: Path) -> list[str]:
    return [
        "run",
        "--kubeconfig", str(tmp_path / "missing-kubeconfig"),
        "--log-format", "json",
        "--leader-elect", "false",
        "--metrics-bind-address", "0",
        "--health-probe-bind-address", "0",
    ]  # fmt: skip


def _probe(code: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def test_a_start_without_a_dsn_loads_neither_sentry_nor_rich(tmp_path: Path) -> None:
    out = _probe(START.format(watched=OPTIONAL + PROOF_OF_PATH), _start_args(tmp_path), _environment())
    assert out["rc"] == 1, out["stderr"]  # the kubeconfig does not exist
    assert set(PROOF_OF_PATH) <= set(out["loaded"]), "the probe no longer walks the start path"
    assert [m for m in out["loaded"] if m in OPTIONAL] == []
    assert not out["sentry_active"]
    # The logs are still the JSON lines of a deployed controller.
    errors = [json.loads(line) for line in out["stderr"].splitlines() if line.startswith("{")]
    assert {"event": "cannot configure the Kubernetes client", "level": "error"}.items() <= errors[-1].items()
    assert out["rich_importable"] == (importlib.util.find_spec("rich") is not None)


def test_importing_the_sentry_module_does_not_load_sentry_sdk() -> None:
    out = _probe(SENTRY_MODULE, [], _environment())
    assert out == {"off": True, "sentry_sdk": False, "stderr": ""}


async def test_a_start_with_a_dsn_initialises_sentry_and_reports_the_failure(tmp_path: Path) -> None:
    with FakeSentry() as fake:
        env = _environment(VPSIE_AUTOSCALER_SENTRY_DSN=fake.dsn)
        out = await asyncio.to_thread(
            _probe, START.format(watched=OPTIONAL + PROOF_OF_PATH), _start_args(tmp_path), env
        )
        assert out["rc"] == 1, out["stderr"]
        assert "sentry_sdk" in out["loaded"]
        assert out["sentry_active"]

        def reported() -> bool:
            return any(
                "cannot configure the Kubernetes client"
                in (e.get("message") or e.get("logentry", {}).get("message", ""))
                for e in fake.events()
            )

        # sentry-sdk flushes on exit; the fake server's thread may still be recording the envelope.
        await eventually(reported, within=10.0, what="the start failure reported to Sentry")
