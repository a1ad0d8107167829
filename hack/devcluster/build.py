#!/usr/bin/env python3
"""Build the local control plane's binaries from pinned Go modules, once per pin set.

Why a builder and not release downloads: the machines this project is developed and tested on
reach only package registries, so kube-apiserver, kube-controller-manager, kube-scheduler, etcd,
kwok and helm are compiled from the Go module proxy (see docs/devcluster.md).

The output lives outside the repository in ``$XDG_CACHE_HOME/vpsie-devcluster/bin-<stamp>`` where
``stamp`` hashes every pin (versions.toml, both tool modules, the Go version). A build goes to a
temporary directory that is renamed into place only after every binary passed a smoke check, so a
killed build never counts as done and a warm run costs nothing.

Usage:
    build.py               build what is missing, print the binary directory
    build.py --print-dir   print the binary directory if it is complete (exit 1 otherwise)
    build.py --bump-k8s 1.36.Q   re-derive tools-k8s/go.mod for another patch release
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
K8S_MODULE = HERE / "tools-k8s"
ETCD_MODULE = HERE / "tools-etcd"
K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "node/chaos/node-not-ready.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)
BUILD_DATE = "2026-01-01T00:00:00Z"


def versions() -> dict[str, str]:
    with (HERE / "versions.toml").open("rb") as f:
        return {k: str(v) for k, v in tomllib.load(f).items()}


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOTOOLCHAIN="local",  # never let a go line fetch another toolchain
        CGO_ENABLED="0",
        GOFLAGS="-modcacherw -trimpath",
    )
    return env


def go(*args: str, cwd: Path | None = None, capture: bool = False) -> str:
    cmd = ["go", *args]
    print("+", " ".join(cmd), flush=True)
    res = subprocess.run(
        cmd, cwd=cwd, env=go_env(), check=True, text=True, stdout=subprocess.PIPE if capture else None
    )
    return res.stdout or ""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vpsie-devcluster"


def stamp() -> str:
    h = hashlib.sha256()
    for p in (
        HERE / "versions.toml",
        K8S_MODULE / "go.mod",
        K8S_MODULE / "go.sum",
        ETCD_MODULE / "go.mod",
        ETCD_MODULE / "go.sum",
    ):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    go_version = subprocess.run(["go", "version"], env=go_env(), capture_output=True, text=True, check=True)
    h.update(go_version.stdout.encode())
    return h.hexdigest()[:16]


def bin_dir() -> Path:
    return cache_root() / f"bin-{stamp()}"


def version_ldflags(k8s: str) -> str:
    major, minor, _ = k8s.split(".")
    values = {
        "gitVersion": f"v{k8s}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "gitCommit": "unknown",
        "buildDate": BUILD_DATE,
    }
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{k}={v}" for k, v in values.items()]
    return " ".join(flags)


def build(out: Path, v: dict[str, str]) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}

    t = time.monotonic()
    go(
        "build",
        "-tags=selinux,notest,grpcnotrace",
        f"-ldflags={version_ldflags(v['kubernetes'])}",
        "-o",
        f"{out}/",
        *(f"k8s.io/kubernetes/cmd/{c}" for c in K8S_COMMANDS),
        cwd=K8S_MODULE,
    )
    timings["kubernetes"] = time.monotonic() - t

    t = time.monotonic()
    go("build", "-ldflags=-s -w", "-o", str(out / "etcd"), "go.etcd.io/etcd/server/v3", cwd=ETCD_MODULE)
    timings["etcd"] = time.monotonic() - t

    env_bin = {"GOBIN": str(out)}
    os.environ.update(env_bin)
    try:
        t = time.monotonic()
        go("install", "-ldflags=-s -w", f"sigs.k8s.io/kwok/cmd/kwok@v{v['kwok']}")
        timings["kwok"] = time.monotonic() - t
        t = time.monotonic()
        major = v["helm"].split(".")[0]
        go(
            "install",
            f"-ldflags=-s -w -X helm.sh/helm/v{major}/internal/version.version=v{v['helm']}",
            f"helm.sh/helm/v{major}/cmd/helm@v{v['helm']}",
        )
        timings["helm"] = time.monotonic() - t
    finally:
        os.environ.pop("GOBIN", None)

    modcache = Path(go("env", "GOMODCACHE", capture=True).strip())
    stage_root = modcache / f"sigs.k8s.io/kwok@v{v['kwok']}" / "kustomize" / "stage"
    docs = [(stage_root / s).read_text() for s in KWOK_STAGES]
    (out / "kwok-stages.yaml").write_text("\n---\n".join(d.strip() for d in docs) + "\n")

    for name, args in (
        ("kube-apiserver", ["--version"]),
        ("kube-controller-manager", ["--version"]),
        ("kube-scheduler", ["--version"]),
        ("etcd", ["--version"]),
        ("kwok", ["--version"]),
        ("helm", ["version", "--short"]),
    ):
        res = subprocess.run(
            [str(out / name), *args], check=False, capture_output=True, text=True, timeout=30
        )
        if res.returncode != 0:
            raise SystemExit(f"smoke check of {name} failed: {res.stdout}{res.stderr}")
        print(f"{name}: {(res.stdout or res.stderr).strip().splitlines()[0]}")
    timings["total"] = time.monotonic() - started
    (out / "build-times.json").write_text(json.dumps({k: round(s, 1) for k, s in timings.items()}) + "\n")


def build_once(target: Path, build_into: Callable[[Path], None], *, prefix: str = "building-") -> Path:
    """``target``, built by ``build_into`` if it is not complete yet. The build goes to a temporary
    sibling that is renamed into place: a half-finished build is never at the final path (shared by
    every pinned tool built here: the control plane, promtool, Karpenter)."""
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        build_into(tmp)
        (tmp / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)  # atomic
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def ensure_built() -> Path:
    return build_once(bin_dir(), lambda tmp: build(tmp, versions()))


def bump_k8s(version: str) -> None:
    """Re-derive the staging replaces from the real go.mod of k8s.io/kubernetes@v<version>."""
    info = json.loads(go("mod", "download", "-json", f"k8s.io/kubernetes@v{version}", capture=True))
    staging = [
        line.split()[0]
        for line in Path(info["GoMod"]).read_text().splitlines()
        if "=> ./staging/src/" in line
    ]
    minor = version.split(".", 1)[1]
    edits = [f"-replace={m}={m}@v0.{minor}" for m in staging]
    go("mod", "edit", f"-require=k8s.io/kubernetes@v{version}", *edits, cwd=K8S_MODULE)
    go("mod", "tidy", cwd=K8S_MODULE)
    text = (HERE / "versions.toml").read_text()
    old = versions()["kubernetes"]
    (HERE / "versions.toml").write_text(text.replace(f'kubernetes = "{old}"', f'kubernetes = "{version}"'))
    print(f"tools-k8s now pins k8s.io/kubernetes v{version} with {len(staging)} staging replaces")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--print-dir", action="store_true", help="print the binary dir if built, else exit 1")
    ap.add_argument("--bump-k8s", metavar="VERSION", help="re-pin tools-k8s to another 1.x.y release")
    args = ap.parse_args()
    if shutil.which("go") is None:
        print("go is required (Go 1.26) to build the local control plane", file=sys.stderr)
        return 1
    if args.bump_k8s:
        bump_k8s(args.bump_k8s)
        return 0
    if args.print_dir:
        d = bin_dir()
        if not (d / ".complete").exists():
            return 1
        print(d)
        return 0
    print(ensure_built())
    return 0


if __name__ == "__main__":
    sys.exit(main())
