"""The simulator's configuration: catalogue, credentials, delays, modes and faults (YAML or defaults).

Every field has a default, so ``vpsie-autoscaler cloudsim`` runs with no file at all; a YAML file
(``--config``) overrides any part. Unknown keys are errors: a typo in a test fixture must not silently
fall back to a default.

Example::

    client_id: demo-client
    client_secret: demo-secret
    api_tokens: [static-demo-token]
    mode: lenient            # or strict: only the official SDK's response shapes
    login_body: any          # json (strict's default) | form (JSON logins refused) | any (lenient's)
    delays: {pending_seconds: 1, boot_seconds: 5, delete_seconds: 2}
    clusters:
      - name: HEL-Kubernetes-49ab
        datacenter: 55f06b85-c9ee-11ed-a8a3-0050569c68dc
        groups:
          - name: GRP-Advanced-c745
            size: 57                   # a plan id (KubeSizeID / boxsize_id)
            nodes: 0
            labels: {workload: general}
            taints: [{key: dedicated, value: batch, effect: NoSchedule}]
    faults:
      - {kind: rate_limit, path: "/apps/v2/k8s/*", probability: 0.1, retry_after: 2}
      - {kind: reply_lost, method: POST, path: "/apps/v2/vm", lost_as: reset, times: 1}
      - {kind: late_reply, path: "*/delete/slave", seconds: 30}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vpsie_autoscaler.cloudsim.faults import FaultSpec

DEFAULT_TOKEN_TTL_SECONDS = 3600.0  # AS docs: "~1 hour"
DEFAULT_PENDING_SECONDS = 1.0  # a VM sits in /vm/pending before it shows in the list
DEFAULT_BOOT_SECONDS = 5.0  # from request to running (fast enough for a demo, slow enough to see)
DEFAULT_DELETE_SECONDS = 2.0
DEFAULT_DATACENTER = "55f06b85-c9ee-11ed-a8a3-0050569c68dc"
DEFAULT_OS = "e1c4a9b0-2f11-11ee-be56-0050569c68dc"
DEFAULT_PROJECT = "9a4b2c1d-0e3f-11ef-9c1a-0050569c68dc"
DEFAULT_CLUSTER = "a3f0c2d4-5b6e-11ef-9c1a-0050569c68dc"
SHARED_CPU = "3b7e2d10-9a41-11ee-8c90-0050569c68dc"
COMPUTE_OPTIMIZED = "3b7e2f5e-9a41-11ee-8c90-0050569c68dc"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimTaint(_Model):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class SimDatacenter(_Model):
    identifier: str
    id: int
    dc_name: str
    country: str = ""
    state: str = ""


class SimCategory(_Model):
    identifier: str
    name: str


class SimPlan(_Model):
    """A size: ``id`` is the boxsize id (a managed group's KubeSizeID), ``ram`` MB, ``ssd`` GB."""

    identifier: str
    id: int
    nickname: str
    cpu: int
    ram: int
    ssd: int
    traffic: int = 5000
    price: float = Field(description="monthly, USD")
    category: str = SHARED_CPU


class SimOS(_Model):
    identifier: str
    id: int
    fullname: str


class SimProject(_Model):
    identifier: str
    id: int
    name: str
    is_default: int = 0


class SimNamed(_Model):
    identifier: str
    id: int
    name: str


class SimGroup(_Model):
    name: str
    size: int  # plan id
    nodes: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[SimTaint] = Field(default_factory=list)


class SimCluster(_Model):
    name: str
    identifier: str | None = None
    datacenter: str = DEFAULT_DATACENTER
    kube_version: str = "1.31.4"
    masters: int = 1
    groups: list[SimGroup] = Field(default_factory=list)


class Delays(_Model):
    pending_seconds: float = Field(default=DEFAULT_PENDING_SECONDS, ge=0)
    boot_seconds: float = Field(default=DEFAULT_BOOT_SECONDS, ge=0)
    delete_seconds: float = Field(default=DEFAULT_DELETE_SECONDS, ge=0)


class SimConfig(_Model):
    client_id: str | None = None
    client_secret: str | None = None
    api_tokens: list[str] = Field(default_factory=list)
    token_ttl_seconds: float = Field(default=DEFAULT_TOKEN_TTL_SECONDS, gt=0)
    mode: Literal["lenient", "strict"] = "lenient"
    token_shape: Literal["sdk", "as", "both"] = "both"  # noqa: S105 - a shape name, not a secret
    login_body: Literal["json", "form", "any"] | None = None
    """Login bodies accepted: ``json`` (as the official SDK sends it), ``form`` (form-encoded only: a
    JSON body is not parsed, so its credentials are missing: 401), ``any``. Unset: ``json`` in strict
    mode, ``any`` in lenient mode."""
    account_password: str | None = None  # VM delete checks it when set
    max_workers_per_cluster: int | None = None  # quota: "Worker nodes count exceeds the allowed limit"
    delays: Delays = Field(default_factory=Delays)
    datacenters: list[SimDatacenter] = Field(
        default_factory=lambda: [
            SimDatacenter(identifier=DEFAULT_DATACENTER, id=6, dc_name="Helsinki", country="Finland"),
            SimDatacenter(
                identifier="7a1d3c52-c9ee-11ed-a8a3-0050569c68dc", id=2, dc_name="New York", country="US"
            ),
        ]
    )
    plan_categories: list[SimCategory] = Field(
        default_factory=lambda: [
            SimCategory(identifier=SHARED_CPU, name="Shared CPU"),
            SimCategory(identifier=COMPUTE_OPTIMIZED, name="Compute Optimized"),
        ]
    )
    plans: list[SimPlan] = Field(
        default_factory=lambda: [
            SimPlan(
                identifier="7d0c1a01-9b2a-11ee-8c90-0050569c68dc",
                id=55,
                nickname="Starter",
                cpu=1,
                ram=2048,
                ssd=40,
                price=10.0,
            ),
            SimPlan(
                identifier="7d0c1b02-9b2a-11ee-8c90-0050569c68dc",
                id=56,
                nickname="Standard",
                cpu=2,
                ram=4096,
                ssd=80,
                price=20.0,
            ),
            SimPlan(
                identifier="7d0c1f3e-9b2a-11ee-8c90-0050569c68dc",
                id=57,
                nickname="Advanced",
                cpu=4,
                ram=8192,
                ssd=160,
                price=40.0,
            ),
            SimPlan(
                identifier="7d0c2004-9b2a-11ee-8c90-0050569c68dc",
                id=58,
                nickname="Professional",
                cpu=8,
                ram=16384,
                ssd=320,
                price=80.0,
            ),
            SimPlan(
                identifier="7d0c2105-9b2a-11ee-8c90-0050569c68dc",
                id=61,
                nickname="HighMem",
                cpu=4,
                ram=32768,
                ssd=160,
                price=90.0,
                category=COMPUTE_OPTIMIZED,
            ),
        ]
    )
    os_images: list[SimOS] = Field(
        default_factory=lambda: [SimOS(identifier=DEFAULT_OS, id=214, fullname="Ubuntu 24.04 x64")]
    )
    projects: list[SimProject] = Field(
        default_factory=lambda: [SimProject(identifier=DEFAULT_PROJECT, id=412, name="Default", is_default=1)]
    )
    ssh_keys: list[SimNamed] = Field(
        default_factory=lambda: [
            SimNamed(identifier="f2e1d0c9-1a2b-11ef-9c1a-0050569c68dc", id=31, name="ops")
        ]
    )
    scripts: list[SimNamed] = Field(
        default_factory=lambda: [
            SimNamed(identifier="0a1b2c3d-1a2b-11ef-9c1a-0050569c68dc", id=7, name="k8s-join.sh")
        ]
    )
    clusters: list[SimCluster] = Field(
        default_factory=lambda: [
            SimCluster(
                name="HEL-Kubernetes-49ab",
                identifier=DEFAULT_CLUSTER,
                groups=[SimGroup(name="GRP-Advanced-c745", size=57)],
            )
        ]
    )
    faults: list[FaultSpec] = Field(default_factory=list)


class ConfigError(Exception):
    """The simulator configuration file cannot be used; the message says why and where."""


def load_config(path: str | Path | None) -> SimConfig:
    """The configuration from a YAML file, or the defaults when ``path`` is None."""
    if path is None:
        return SimConfig()
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read simulator config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"simulator config {path} is not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"simulator config {path} must be a mapping at the top level")
    try:
        return SimConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"simulator config {path} is invalid:\n{exc}") from None
