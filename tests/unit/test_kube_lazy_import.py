"""kubernetes_asyncio is imported without its generated models, and they stay reachable on use."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys, json
import vpsie_autoscaler.kube  # installs the lazy packages, imports the client and config loaders
loaded = sorted(m for m in sys.modules if m.startswith("kubernetes_asyncio.client.models."))
from kubernetes_asyncio.client import ApiClient, Configuration, V1Pod
from kubernetes_asyncio.config import load_kube_config
import kubernetes_asyncio
print(json.dumps({"models_at_import": len(loaded), "v1pod": V1Pod.__name__,
                  "version": kubernetes_asyncio.__version__, "loader": load_kube_config.__name__}))
"""

DESERIALIZE = """
import asyncio, json
import vpsie_autoscaler.kube
from kubernetes_asyncio.client import ApiClient
class R:
    data = json.dumps({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}})
async def main():
    async with ApiClient() as api:
        print(type(api.deserialize(R(), "V1Pod")).__name__)
asyncio.run(main())
"""


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


def test_generated_models_are_not_imported_up_front_but_resolve_on_use() -> None:
    import json

    out = json.loads(_run(PROBE).strip())
    assert out["models_at_import"] == 0
    assert out["v1pod"] == "V1Pod"
    assert out["version"].startswith("36.")
    assert out["loader"] == "load_kube_config"


def test_typed_deserialisation_still_works() -> None:
    assert _run(DESERIALIZE).strip() == "V1Pod"
