#!/usr/bin/env python3
"""Build Prometheus' promtool from its pinned Go module, once per pin set.

Why: the chart's alert rules are tested with ``promtool test rules`` (Prometheus' own rule evaluator,
fed synthetic series), and the machines this project is tested on reach only package registries, so
promtool is compiled from the Go module proxy like the control-plane tools (hack/devcluster/build.py,
whose cache root, Go environment and atomic-rename layout this reuses).

Only ``./cmd/promtool`` is built, with Prometheus' ``remove_all_sd`` build tag: the rule evaluator
needs no cloud service discovery, and leaving the two dozen SD plugins out keeps a cold build to
about 4 CPU-minutes (measured: 3m28s user + 24s system, modules already downloaded), about two
minutes of wall time on two idle cores (an estimate from the CPU time). ``GOTOOLCHAIN=local``: the
module declares ``go 1.26.7``.

The output is ``$XDG_CACHE_HOME/vpsie-devcluster/promtool-<stamp>/promtool`` (``stamp`` hashes
tools/go.mod, tools/go.sum, the build tags and ``go version``).

Usage:
    build.py               build what is missing, print the directory
    build.py --print-dir   print the directory if it is complete (exit 1 otherwise)
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make the sibling builder importable
    sys.path.insert(0, str(ROOT))

from hack.devcluster.build import build_once, cache_root, go_env  # noqa: E402 - after the path fix above

HERE = Path(__file__).resolve().parent
MODULE = HERE / "tools"
PACKAGE = "github.com/prometheus/prometheus/cmd/promtool"
TAGS = "remove_all_sd"  # no service discovery plugins: rules evaluation does not use them
BUILD_DATE = "20260101-00:00:00"


def go(*args: str) -> None:
    print("+ go", " ".join(args), flush=True)
    subprocess.run(["go", *args], cwd=MODULE, env=go_env(), check=True)


def prometheus_version() -> str:
    """The Prometheus release of the pinned module: v0.316.0 is Prometheus 3.16.0."""
    m = re.search(r"github\.com/prometheus/prometheus v0\.(\d+)\.(\d+)", (MODULE / "go.mod").read_text())
    if m is None:
        raise SystemExit("tools/go.mod does not require github.com/prometheus/prometheus")
    minor = int(m.group(1))
    return f"{minor // 100}.{minor % 100}.{m.group(2)}"


def stamp() -> str:
    h = hashlib.sha256(TAGS.encode())
    for p in (MODULE / "go.mod", MODULE / "go.sum"):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    version = subprocess.run(["go", "version"], env=go_env(), capture_output=True, text=True, check=True)
    h.update(version.stdout.encode())
    return h.hexdigest()[:16]


def out_dir() -> Path:
    return cache_root() / f"promtool-{stamp()}"


def build(out: Path) -> None:
    started = time.monotonic()
    pkg = "github.com/prometheus/common/version"
    ldflags = " ".join(
        [
            "-s",
            "-w",
            f"-X {pkg}.Version={prometheus_version()}",
            f"-X {pkg}.Revision=unknown",
            f"-X {pkg}.Branch=module",
            f"-X {pkg}.BuildDate={BUILD_DATE}",
        ]
    )
    go("build", f"-tags={TAGS}", f"-ldflags={ldflags}", "-o", str(out / "promtool"), PACKAGE)
    res = subprocess.run(
        [str(out / "promtool"), "--version"], check=False, capture_output=True, text=True, timeout=30
    )
    if res.returncode != 0 or "promtool" not in res.stdout + res.stderr:
        raise SystemExit(f"smoke check of promtool failed: {res.stdout}{res.stderr}")
    print((res.stdout or res.stderr).strip().splitlines()[0])
    (out / "build-time").write_text(f"{time.monotonic() - started:.0f}s\n")


def ensure_built() -> Path:
    return build_once(out_dir(), build, prefix="building-promtool-")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--print-dir", action="store_true", help="print the directory if built, else exit 1")
    args = ap.parse_args()
    if shutil.which("go") is None:
        print("go is required (Go 1.26) to build promtool", file=sys.stderr)
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
