#!/usr/bin/env python3
"""Build Karpenter's kwok cloud provider from its pinned Go module, once per pin set.

Why: the comparison benchmark (``make bench-compare``) runs Karpenter beside vpsie-autoscaler on the
same local control plane, and the machines this project is tested on reach only package registries,
so ``sigs.k8s.io/karpenter/kwok`` is compiled from the Go module proxy like the control-plane tools
(hack/devcluster/build.py, whose cache root and atomic-rename layout this reuses).

Karpenter v1.15.0 declares ``go 1.26.9``: the pinned ``GOTOOLCHAIN`` makes the Go command fetch that
toolchain from the module proxy. The output is ``$XDG_CACHE_HOME/vpsie-devcluster/karpenter-<stamp>``
(``stamp`` hashes tools/go.mod, tools/go.sum and the toolchain pin) holding the ``karpenter-kwok``
binary and the CRDs copied from the module (NodePool, NodeClaim, NodeOverlay, CapacityBuffer,
KWOKNodeClass).

Usage:
    build.py               build what is missing, print the directory
    build.py --print-dir   print the directory if it is complete (exit 1 otherwise)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make the sibling builder importable
    sys.path.insert(0, str(ROOT))

from hack.devcluster.build import build_once, cache_root  # noqa: E402 - after the path fix above

HERE = Path(__file__).resolve().parent
MODULE = HERE / "tools"
TOOLCHAIN = "go1.26.10"
PACKAGE = "sigs.k8s.io/karpenter/kwok"
CRD_GLOBS = ("kwok/charts/crds/*.yaml", "kwok/apis/crds/*.yaml")


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOTOOLCHAIN=TOOLCHAIN, CGO_ENABLED="0", GOFLAGS="-modcacherw -trimpath")
    return env


def go(*args: str, capture: bool = False) -> str:
    print("+ go", " ".join(args), flush=True)
    res = subprocess.run(
        ["go", *args],
        cwd=MODULE,
        env=go_env(),
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return res.stdout or ""


def karpenter_version() -> str:
    m = re.search(r"^\s*(?:require\s+)?sigs\.k8s\.io/karpenter (v\S+)", (MODULE / "go.mod").read_text(), re.M)
    if m is None:
        raise SystemExit("tools/go.mod does not require sigs.k8s.io/karpenter")
    return m.group(1)


def stamp() -> str:
    h = hashlib.sha256(TOOLCHAIN.encode())
    for p in (MODULE / "go.mod", MODULE / "go.sum"):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def out_dir() -> Path:
    return cache_root() / f"karpenter-{stamp()}"


def build(out: Path) -> None:
    started = time.monotonic()
    go("build", "-ldflags=-s -w", "-o", str(out / "karpenter-kwok"), PACKAGE)
    mod_dir = Path(go("list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/karpenter", capture=True).strip())
    crds = out / "crds"
    crds.mkdir()
    for pattern in CRD_GLOBS:
        for f in sorted(mod_dir.glob(pattern)):
            shutil.copyfile(f, crds / f.name)
    if not any(crds.glob("karpenter.sh_nodepools.yaml")):
        raise SystemExit(f"no NodePool CRD under {mod_dir}")
    res = subprocess.run(
        [str(out / "karpenter-kwok"), "--help"], check=False, capture_output=True, text=True, timeout=30
    )
    if "metrics-port" not in res.stdout + res.stderr:
        raise SystemExit(f"smoke check of karpenter-kwok failed: {res.stdout}{res.stderr}")
    (out / "version").write_text(f"{karpenter_version()} {TOOLCHAIN} {time.monotonic() - started:.0f}s\n")


def ensure_built() -> Path:
    return build_once(out_dir(), build, prefix="building-karpenter-")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--print-dir", action="store_true", help="print the directory if built, else exit 1")
    args = ap.parse_args()
    if shutil.which("go") is None:
        print("go is required to build Karpenter's kwok provider", file=sys.stderr)
        return 1
    if args.print_dir:
        d = out_dir()
        if not (d / ".complete").exists():
            return 1
        print(d)
        return 0
    print(ensure_built())
    return 0


if __name__ == "__main__":
    sys.exit(main())
