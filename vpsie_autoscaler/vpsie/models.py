"""Wire models of the VPSie API, parsed straight from response bytes with pydantic v2.

Field names follow the API exactly (snake_case, camelCase and the odd capital, as VPSie sends them;
``docs/vpsie-api.md`` §4). Three rules make the models survive a moving API:

- unknown fields are ignored (``extra="ignore"``): VPSie adds fields freely;
- numbers are lenient: VPSie sends prices and sizes as numbers or numeric strings depending on the
  endpoint and environment (SDK-B's ``FlexString``), so :data:`LenientInt` / :data:`LenientFloat` accept
  int, float and numeric strings, and an empty string as "absent";
- where VPSie's own clients disagree on a shape (cluster nodes, token response, project id key), the
  model holds the union and the accessors pick whichever is present.

**Malformed items.** A list item that does not fit its model is skipped by the client and reported
(``vpsie.malformed_item`` and ``vpsie_autoscaler_vpsie_api_malformed_items_total{operation}``); the rest of
the list is used. What is fatal to an item and what is lenient is decided per field:

- fatal: a missing/null/blank ``identifier`` (VMs, clusters) or ``hostname`` (VMs, cluster nodes, pending
  VMs), a hostname with whitespace or control characters, a node group's non-numeric ``id``, a null
  state flag (``is_active``, ``power``, ``is_deleted``, ``is_terminated``) or ``nodes_count``, any number
  field holding a non-numeric value, and a timestamp in no known form: such an item cannot be matched
  or its state cannot be known;
- lenient: ``null`` in an optional field; numbers given as numeric strings and text given as numbers;
  the MySQL zero date (``0000-00-00 00:00:00``) and an empty timestamp (→ ``None``); a timestamp without
  an offset is taken as **UTC** (VPSie's examples all end in ``Z``, MySQL ``DATETIME`` carries no zone);
  a null ``group_name``/``cluster_name`` (→ ``""``, names are cosmetic, ids are used).

Every ``datetime`` a model produces is timezone-aware, so comparing it with the clock never raises.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

T = TypeVar("T")

# Timestamp formats VPSie is known or suspected to send (§3.1): ISO-8601 with milliseconds and a Z
# (a JS Date in JSON), or MySQL's "YYYY-MM-DD HH:MM:SS" (and MySQL's zero date for "never").
_SQL_TIMESTAMP = "%Y-%m-%d %H:%M:%S"
_ZERO_DATE = "0000-00-00"
# A hostname as VPSie may send it: anything printable without whitespace (Unicode line separators are
# whitespace too). A blank one, or one with a newline, cannot name a node.
_HOSTNAME = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]{1,253}")


def _to_number(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return value  # let pydantic report a clear type error
        return int(number) if number.is_integer() and "." not in text else number
    return value


def _to_int(value: Any) -> Any:
    value = _to_number(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _to_timestamp(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text or text.startswith(_ZERO_DATE):
            return None  # MySQL's zero date means "never"
        try:
            return datetime.strptime(text, _SQL_TIMESTAMP).replace(tzinfo=UTC)
        except ValueError:
            return text  # ISO-8601 (with Z) is parsed by pydantic itself
    return value


def _aware(value: datetime | None) -> datetime | None:
    """A timestamp without an offset is UTC (VPSie's examples all use Z): never a naive datetime."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


LenientInt = Annotated[int, BeforeValidator(_to_int)]
LenientFloat = Annotated[float, BeforeValidator(_to_number)]
# Optional variants carry the validator on the union, so "" can become None before the type check.
OptInt = Annotated[int | None, BeforeValidator(_to_int)]
OptFloat = Annotated[float | None, BeforeValidator(_to_number)]
OptTimestamp = Annotated[datetime | None, BeforeValidator(_to_timestamp), AfterValidator(_aware)]


def _to_str(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _null_is_empty(value: Any) -> Any:
    return "" if value is None else _to_str(value)


def _hostname(value: str) -> str:
    if not _HOSTNAME.fullmatch(value):
        raise ValueError("hostname is blank, too long or contains whitespace or control characters")
    return value


def _identifier(value: str) -> str:
    if not value.strip():
        raise ValueError("identifier is blank")
    return value


OptStr = Annotated[str | None, BeforeValidator(_to_str)]
Name = Annotated[str, BeforeValidator(_null_is_empty)]
"""Cosmetic text: ``null`` reads as ``""``."""
Hostname = Annotated[str, AfterValidator(_hostname)]
"""Required, non-blank, no whitespace or control characters: the handle every listing is matched by."""
Identifier = Annotated[str, BeforeValidator(_to_str), AfterValidator(_identifier)]
"""Required and non-blank: the handle of a targeted call."""


class Wire(BaseModel):
    """Base of every VPSie model: unknown fields ignored, immutable after parsing."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


# --- envelope ---------------------------------------------------------------------------------------


class ErrorHead(Wire):
    """The parts of any envelope that say whether the call failed (§3.2)."""

    error: bool = False
    message: str | None = None
    code: OptInt = None


class Envelope(Wire, Generic[T]):
    """``{"error": bool, "data": ..., "total"?: any, "message"?: str, "code"?: int}``."""

    error: bool = False
    data: T | None = None
    message: str | None = None
    code: OptInt = None
    total: Any = None


# --- auth -------------------------------------------------------------------------------------------


class TokenValue(Wire):
    token: str = ""
    expires: str | None = None


class TokenPair(Wire):
    access: TokenValue | None = None
    refresh: TokenValue | None = None


class TokenResponse(Wire):
    """Both known shapes of ``POST /apps/v2/auth/from/api`` (§2.3), plus ``data.access``."""

    error: bool = False
    message: str | None = None
    code: OptInt = None
    token: TokenPair | None = None  # SDK shape
    access_token: TokenValue | None = Field(default=None, alias="accessToken")  # AS shape
    data: TokenPair | None = None

    def access(self) -> TokenValue | None:
        """The access token, looked up in the order §2.3 recommends."""
        for candidate in (
            self.token.access if self.token else None,
            self.access_token,
            self.data.access if self.data else None,
        ):
            if candidate is not None and candidate.token:
                return candidate
        return None


# --- managed Kubernetes -----------------------------------------------------------------------------


class K8sCluster(Wire):
    """An item of ``GET /apps/v2/k8s/cluster/all``."""

    identifier: Identifier
    cluster_name: Name = ""
    count: OptInt = None
    manager_count: OptInt = Field(default=None, alias="managerCount")
    slave_count: OptInt = Field(default=None, alias="slaveCount")
    kube_version: OptStr = None
    nickname: OptStr = None
    cpu: OptInt = None
    ram: OptInt = None
    traffic: OptInt = None
    price: OptFloat = None
    created_on: OptTimestamp = None


class K8sNode(Wire):
    """A node of a cluster: the union of the SDK and AS shapes (§4.10).

    The SDK shape has no ``identifier`` (needed for a targeted delete) and no size; the AS shape has
    both. ``group_id`` is sent by the simulator only; the real API is not known to send it.
    """

    id: OptInt = None
    identifier: OptStr = None
    hostname: Hostname
    default_ip: OptStr = None
    private_ip: OptStr = None
    ip: OptStr = None
    node_type: OptInt = None
    role: OptStr = None
    status: OptStr = None
    node_id: OptInt = None
    datacenter_id: OptInt = None
    cpu: OptInt = None
    ram: OptInt = None
    disk: OptInt = None
    group_id: OptInt = None
    created_on: OptTimestamp = None

    @property
    def is_worker(self) -> bool:
        """Masters are ``node_type`` 1 / role "master"; everything else is a worker ("slave")."""
        if self.role:
            return self.role.lower() != "master"
        if self.node_type is not None:
            return self.node_type != 1
        return "-master" not in self.hostname.lower()

    @property
    def address(self) -> str | None:
        return self.default_ip or self.ip


class K8sClusterDetail(K8sCluster):
    """``GET /apps/v2/k8s/cluster/byId/{identifier}``: the summary plus ``nodes``.

    ``nodes`` is required: a detail without it (or with ``null``) says nothing about the nodes, and an
    empty list would read as "the cluster has no nodes" and decide creations."""

    nodes: list[K8sNode]


class K8sNodeGroup(Wire):
    """An item of ``GET /apps/v2/k8s/node/groups/byClusterId/{identifier}``."""

    id: LenientInt
    identifier: OptStr = None
    group_name: Name = ""
    boxsize_id: OptInt = None
    cpu: OptInt = None
    ram: OptInt = None
    ssd: OptInt = None
    traffic: OptInt = None
    nodes_count: LenientInt = 0
    cluster_id: OptInt = None
    project_id: OptInt = None
    datacenter_id: OptInt = None
    dc_identifier: str | None = Field(default=None, alias="dcIdentifier")
    is_active: OptInt = None
    created_on: OptTimestamp = None


class K8sOffer(Wire):
    """An item of ``POST /apps/v2/k8s/offers`` (AS-only, fields unverified: all optional)."""

    id: OptInt = None
    identifier: str | None = None
    name: str | None = None
    nickname: str | None = None
    cpu: OptInt = None
    ram: OptInt = None
    disk: OptInt = None
    ssd: OptInt = None
    price: OptFloat = None
    hourly_price: OptFloat = None


# --- plain VMs --------------------------------------------------------------------------------------


class VM(Wire):
    """An item of ``GET {VM}`` and ``data.vmData`` of ``GET {VM}/{identifier}`` (§4.5)."""

    id: OptInt = None
    identifier: Identifier
    hostname: Hostname
    boxsize_id: OptInt = None
    boximage_id: OptInt = None
    datacenter_id: OptInt = None
    dc_identifier: str | None = Field(default=None, alias="dcIdentifier")
    project_id: OptInt = None
    project_id_alt: OptInt = Field(default=None, alias="projectId")
    cpu: OptInt = None
    ram: OptInt = None
    ssd: OptInt = None
    default_ip: OptStr = None
    private_ip: OptStr = None
    public_ip: OptStr = Field(default=None, alias="publicIp")
    is_active: LenientInt = 0
    power: LenientInt = 0
    state: OptStr = None
    is_terminated: LenientInt = 0
    is_deleted: LenientInt = 0
    category: OptStr = None
    created_on: OptTimestamp = None

    @property
    def project(self) -> int | None:
        return self.project_id if self.project_id is not None else self.project_id_alt


class VMDetail(Wire):
    """``data`` of ``GET {VM}/{identifier}``: the VM sits in ``vmData`` beside untyped siblings."""

    vm_data: VM = Field(alias="vmData")
    vm_tags: list[Any] | None = Field(default=None, alias="vmTags")

    @property
    def tag_names(self) -> list[str]:
        """The VM's tags as plain names. ``vmTags`` is untyped in every source (§4.5, §4.8): plain
        strings and objects with ``name`` (or ``tag``/``tagName``) are both accepted."""
        names = []
        for item in self.vm_tags or []:
            if isinstance(item, str):
                names.append(item)
            elif isinstance(item, dict):
                value = item.get("name") or item.get("tag") or item.get("tagName")
                if isinstance(value, str):
                    names.append(value)
        return names


class PendingVMData(Wire):
    """The create request as VPSie stored it in the pending queue (types differ from the request)."""

    hostname: Hostname
    resource_identifier: str | None = Field(default=None, alias="resourceIdentifier")
    dc_identifier: str | None = Field(default=None, alias="dcIdentifier")
    process_id: str | None = Field(default=None, alias="processId")


class PendingVM(Wire):
    """An item of ``GET /apps/v2/vm/pending``."""

    id: OptStr = None
    data: PendingVMData
    running: OptInt = None
    type: str | None = None


# --- catalogue --------------------------------------------------------------------------------------


class Datacenter(Wire):
    identifier: Identifier
    dc_name: str = ""
    state: str | None = None
    country: str | None = None
    is_active: LenientInt = 1


class PlanCategory(Wire):
    identifier: Identifier
    name: str = ""


class Plan(Wire):
    """An item of ``POST /apps/v2/resources``: ``ram`` in MB, ``ssd`` in GB, ``price`` monthly."""

    id: OptInt = None
    identifier: Identifier
    nickname: str = ""
    cpu: LenientInt
    ram: LenientInt
    ssd: LenientInt
    traffic: OptInt = None
    price: OptFloat = None
    net_speed: OptInt = None


class Project(Wire):
    id: OptInt = None
    identifier: Identifier
    name: str = ""
    is_default: LenientInt = 0


class ProjectPage(Wire):
    """The project list's ``data: {rows, count}``."""

    rows: list[Project] = Field(default_factory=list)
    count: OptInt = None


class SSHKey(Wire):
    id: OptInt = None
    identifier: Identifier
    name: str = ""


class Script(Wire):
    identifier: Identifier
    script_name: str = ""
    type: str | None = None
