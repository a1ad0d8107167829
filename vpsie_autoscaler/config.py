"""Settings of ``vpsie-autoscaler run``: flags and ``VPSIE_AUTOSCALER_*`` environment variables.

The names and defaults are the configuration contract of docs/architecture.md (the chart maps its
values to these variables). Precedence: flags > environment > defaults. Durations are seconds.
Every value is validated at start-up; a bad one is reported as one line naming the flag and the
variable, and the process exits with code 2 (see :func:`format_error`).

Secrets (``VPSIE_CLIENT_SECRET``, ``VPSIE_API_TOKEN``) are ``SecretStr`` — never printed or logged —
and are deliberately not flags: command lines are visible to every user of the machine (``ps``).

A ``VPSIE_AUTOSCALER_*`` variable that names no setting would be ignored silently (a misspelt
``VPSIE_AUTOSCALER_DRYRUN=true`` leaves the autoscaler acting for real), so :func:`unknown_environment`
finds them for a start-up warning naming the closest setting. Kubernetes' service-link variables of a
Service whose name starts with ``vpsie-autoscaler`` (``VPSIE_AUTOSCALER_METRICS_SERVICE_HOST``,
``..._PORT_8080_TCP_ADDR``, ...) are not settings and are left out. Only names are reported, never values.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "VPSIE_AUTOSCALER_"
# Where a pod finds its own namespace (the Lease and credentials Secret live there by default).
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
FALLBACK_NAMESPACE = "kube-system"
# client-go's leader election JitterFactor: renew deadline must exceed 1.2 retry periods.
LEADER_JITTER_FACTOR = 1.2
# Fields that must never be given on the command line.
SECRET_FIELDS = frozenset({"vpsie_client_secret", "vpsie_api_token", "sentry_dsn"})
_EXPANDER_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The variables Kubernetes injects for each Service of the namespace ("service links"), and the values
# it gives them: an address, a port, a protocol, or proto://address:port.
_SERVICE_LINK_NAME = re.compile(
    r"_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT|PORT_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)$"
)
_IPV4 = r"\d{1,3}(\.\d{1,3}){3}"
_IPV6 = r"[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*"
_SERVICE_LINK_VALUE = re.compile(
    rf"\d{{1,5}}|{_IPV4}|{_IPV6}|(?i:tcp|udp|sctp)(://({_IPV4}|\[{_IPV6}\]):\d{{1,5}})?"
)

Seconds = Annotated[float, Field(gt=0)]
MAX_GC_SECONDS = 7 * 24 * 3600.0
"""Longest Failed-record TTL and orphan grace period accepted (a week): beyond it a leak goes unseen."""


def pod_namespace() -> str:
    """The pod's namespace in a cluster, else ``kube-system``."""
    try:
        ns = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        return FALLBACK_NAMESPACE
    return ns or FALLBACK_NAMESPACE


def _check_bind_address(value: str) -> str:
    # Same grammar the HTTP servers use (":8080", "host:8080", "0" to disable).
    from vpsie_autoscaler.runtime.http import BindAddressError, parse_bind_address  # noqa: PLC0415

    try:
        parse_bind_address(value)
    except BindAddressError as exc:
        raise ValueError(str(exc)) from None
    return value


class Settings(BaseSettings):
    """Everything ``run`` can be told. Field ``x_y`` ↔ flag ``--x-y`` ↔ env ``VPSIE_AUTOSCALER_X_Y``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, extra="forbid", validate_default=True
    )

    kubeconfig: str | None = Field(None, description="kubeconfig path (unset: in-cluster service account)")
    namespace: str = Field(
        default_factory=pod_namespace, description="namespace of the Lease and credentials"
    )
    metrics_bind_address: str = Field(":8080", description="Prometheus /metrics listener ('0' disables)")
    health_probe_bind_address: str = Field(
        ":8081", description="/healthz and /readyz listener ('0' disables)"
    )
    leader_elect: bool = Field(True, description="elect a leader through a Lease")
    leader_election_id: str = Field("vpsie-autoscaler", description="name of the Lease")
    lease_duration: Seconds = Field(15.0, description="seconds a Lease is valid without renewal")
    renew_deadline: Seconds = Field(10.0, description="seconds the leader keeps trying to renew")
    retry_period: Seconds = Field(2.0, description="seconds between Lease attempts")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    log_format: Literal["auto", "json", "console"] = Field("auto", description="auto: console on a TTY")
    dry_run: bool = Field(False, description="compute and report every decision, change nothing")
    vpsie_base_url: str = Field("https://api.vpsie.com", description="VPSie API base URL")
    vpsie_client_id: str | None = Field(None, description="VPSie token-exchange client id")
    vpsie_client_secret: SecretStr | None = Field(None, description="VPSie client secret (env only)")
    vpsie_api_token: SecretStr | None = Field(None, description="static VPSie API token (env only)")
    vpsie_credentials_dir: str | None = Field(None, description="mounted Secret with the VPSie credentials")
    vpsie_rate_limit: int = Field(
        100,
        ge=1,
        description="ceiling of client-side VPSie requests per minute (lower while VPSie throttles)",
    )
    vpsie_rate_limit_burst: int = Field(
        60,  # = vpsie.client.DEFAULT_RATE_LIMIT_BURST: a 50-node scale-up and its reads at once
        ge=1,
        description="VPSie requests that may go out back to back before the per-minute rate applies",
    )
    cluster_id: str | None = Field(
        None,
        max_length=128,
        description="this cluster's identity in VM ownership tags (unset: the kube-system namespace UID)",
    )
    vpsie_cluster_identifier: str | None = Field(
        None,
        max_length=253,
        description="the VPSie managed cluster of NodeGroups that omit managed.clusterIdentifier "
        "(unset: the stock vpsie-secret's resourceIdentifier, else the VPSie cluster whose nodes are "
        "this cluster's Nodes)",
    )
    scan_interval: Seconds = Field(10.0, description="seconds between periodic reconciles of cloud state")
    expander: str = Field("priority,least-waste", description="expander chain, comma-separated")
    max_nodes_total: int = Field(0, ge=0, description="cluster-wide node limit (0: none)")
    max_cores_total: int = Field(0, ge=0, description="cluster-wide CPU core limit (0: none)")
    max_memory_total_gib: float = Field(0, ge=0, description="cluster-wide memory limit in GiB (0: none)")
    consolidation_evictions_per_hour: int = Field(
        100,
        ge=0,
        description="pods consolidation may evict per hour, all NodeGroups together (0: empty nodes only)",
    )
    failed_vpsienode_ttl: float = Field(
        3600.0,
        ge=60,
        le=MAX_GC_SECONDS,
        description="seconds a Failed VPSieNode is kept (its NodeGroup's back-off is derived from it; never "
        "less than the group's backoff.max) before garbage collection deletes it",
    )
    orphan_grace_period: float = Field(
        600.0,
        ge=60,
        le=MAX_GC_SECONDS,
        description="seconds a VPSie instance tagged for this cluster may exist without a VPSieNode (counted "
        "from its creation in VPSie) before garbage collection deletes it",
    )
    # Additions to the contract table (runtime knobs):
    graceful_shutdown_timeout: Seconds = Field(30.0, description="seconds allowed for a clean stop")
    sentry_dsn: SecretStr | None = Field(
        None, description="report errors and failed reconciles to this Sentry DSN (env only; unset: off)"
    )
    sentry_environment: str | None = Field(
        None, description="Sentry environment of the reports (unset: production)"
    )

    @field_validator("metrics_bind_address", "health_probe_bind_address")
    @classmethod
    def _bind(cls, value: str) -> str:
        return _check_bind_address(value)

    @field_validator("namespace", "leader_election_id")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _DNS_LABEL.match(value) or len(value) > 63:
            raise ValueError(f"{value!r} is not a valid Kubernetes name (lower-case letters, digits, '-')")
        return value

    @field_validator("vpsie_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @field_validator("expander")
    @classmethod
    def _expander(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",")]
        bad = [n for n in names if not _EXPANDER_NAME.match(n)]
        if not names or bad:
            raise ValueError(
                f"expander chain {value!r} must be comma-separated names like 'priority,least-waste'"
            )
        from vpsie_autoscaler.scaling.expanders import EXPANDERS  # noqa: PLC0415 - pure, light

        unknown = [n for n in names if n not in EXPANDERS]
        if unknown:
            raise ValueError(f"unknown expander(s) {', '.join(unknown)}: choose from {', '.join(EXPANDERS)}")
        return ",".join(names)

    @field_validator("kubeconfig", "vpsie_credentials_dir", "vpsie_client_id", "sentry_environment")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("sentry_dsn")
    @classmethod
    def _dsn(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty variable (a chart value left blank) means "off"; anything else must be a DSN URL.
        if value is None or not value.get_secret_value().strip():
            return None
        if not re.match(r"^https?://[^\s/@]+@[^\s/]+/\S+$", value.get_secret_value().strip()):
            raise ValueError("not a Sentry DSN (https://<key>@<host>/<project>)")
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _leader_timing(self) -> Settings:
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"lease-duration ({self.lease_duration:g}s) must be greater than renew-deadline "
                f"({self.renew_deadline:g}s)"
            )
        if self.renew_deadline <= LEADER_JITTER_FACTOR * self.retry_period:
            raise ValueError(
                f"renew-deadline ({self.renew_deadline:g}s) must be greater than {LEADER_JITTER_FACTOR} x "
                f"retry-period ({self.retry_period:g}s)"
            )
        if self.vpsie_client_id and self.vpsie_client_secret is None and self.vpsie_credentials_dir is None:
            raise ValueError("vpsie-client-id is set but VPSIE_AUTOSCALER_VPSIE_CLIENT_SECRET is not")
        return self


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def format_error(err: ValidationError) -> str:
    """One line for the first problem: which setting (flag and env), which value, what is wrong."""
    first = err.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if loc:
        field = loc[0]
        where = flag_name(field) if field in SECRET_FIELDS else f"{flag_name(field)} / {env_name(field)}"
        if field in SECRET_FIELDS:
            where = env_name(field)
        value: Any = first.get("input")
        shown = "" if field in SECRET_FIELDS or isinstance(value, dict) else f" {value!r}"
        return f"invalid setting {where}{shown}: {msg}"
    return f"invalid settings: {msg}"


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Environment plus explicit ``overrides`` (the flags given). Raises ``ValidationError``."""
    return Settings(**(overrides or {}))


@dataclass(frozen=True)
class UnknownVariable:
    """A ``VPSIE_AUTOSCALER_*`` environment variable that matches no setting (its value is not kept)."""

    name: str
    closest: str | None  # the field of the closest setting, if any is close

    @property
    def message(self) -> str:
        text = f"environment variable {self.name} matches no setting and is ignored"
        if self.closest is None:
            return text
        where = env_name(self.closest)
        if self.closest not in SECRET_FIELDS:
            where += f" (flag {flag_name(self.closest)})"
        return f"{text}; did you mean {where}?"


def _is_service_link(name: str, value: str) -> bool:
    return bool(_SERVICE_LINK_NAME.search(name)) and _SERVICE_LINK_VALUE.fullmatch(value.strip()) is not None


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[UnknownVariable]:
    """The ``VPSIE_AUTOSCALER_*`` variables of ``environ`` (default: the process's) that no setting
    reads, each with the closest setting by name (:mod:`difflib`), sorted by name."""
    env = os.environ if environ is None else environ
    fields = {name.upper(): name for name in Settings.model_fields}
    unknown = []
    for name in sorted(env):
        upper = name.upper()  # settings are read case-insensitively
        if not upper.startswith(ENV_PREFIX):
            continue
        suffix = upper.removeprefix(ENV_PREFIX)
        if suffix in fields or _is_service_link(upper, env[name]):
            continue
        close = difflib.get_close_matches(suffix, list(fields), n=1, cutoff=0.6)
        unknown.append(UnknownVariable(name=name, closest=fields[close[0]] if close else None))
    return unknown
