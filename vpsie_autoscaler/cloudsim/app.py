"""The simulator's HTTP face: VPSie's paths, envelopes and quirks on aiohttp, plus ``/_sim`` admin.

Two response modes (``docs/vpsie-api.md`` §6.2): ``strict`` answers only with the official SDK's field
shapes (numbers as numbers, cluster nodes without ``identifier``, the SDK token shape); ``lenient``
sends the union of known variants (prices and counts as numeric strings, AS node fields, a
``group_id`` per node, the token shape named by ``token_shape``). A client must cope with both.
Logins: strict accepts the JSON body the SDK sends, lenient JSON or form-encoded; ``login_body: form``
models an API that parses only the form body VPSie's Go autoscaler sends (a JSON login then gets 401).

Quirks reproduced: 401 ``Please authenticate``; unknown routes 404 ``Not found``; ``projectId`` must be
a string; numeric address flags silently ignored; one node group per size in a cluster; VM delete
without ``deleteStatistic`` → 500; creation answers ``data: true`` and the instance appears later
(pending queue first); both VM prefixes ``/apps/v2/vm`` and ``/api/v2/vm``; ``GET {VM}?projectId=``
takes the project's numeric id or its identifier.

Faults (:mod:`.faults`) are applied here, around every non-admin route: the refusing kinds answer
before the handler runs (nothing changes), ``reply_lost`` / ``late_reply`` run the handler and then
lose or delay its answer. The request log (``/_sim/requests``) records the status the client saw (0
for a dropped connection) and, for a lost answer, the status that was served as ``lost``.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import orjson
import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from vpsie_autoscaler.cloudsim.config import SimConfig, SimTaint
from vpsie_autoscaler.cloudsim.faults import AFTER_KINDS, Fault, FaultKind, FaultSet, FaultSpec
from vpsie_autoscaler.cloudsim.state import (
    MASTER_NODE_TYPE,
    USER_ID,
    WORKER_NODE_TYPE,
    Group,
    Node,
    SimError,
    SimState,
    iso,
    tag_identifier,
)
from vpsie_autoscaler.runtime.clock import Clock, RealClock

log = structlog.get_logger("vpsie_autoscaler.cloudsim")

VM_PATHS: Final = ("/apps/v2/vm", "/api/v2/vm")
ADMIN_PREFIX: Final = "/_sim"
LOGIN_PATH: Final = "/apps/v2/auth/from/api"
REQUEST_LOG_SIZE: Final = 2000  # recent requests kept for /_sim/requests
HOURS_PER_MONTH: Final = 730.0
HTML_502: Final = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
HTML_504: Final = (
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    "<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
DROPPED_STATUS: Final = 0  # logged for a request whose connection was dropped without an answer
STATE_KEY: Final = web.AppKey("state", SimState)
NEVER_BOOT_KEY: Final = web.RequestKey("never_boot", bool)
LOST_KEY: Final = web.RequestKey("lost", int)  # the status served before a reply_lost fault hid it
DROPPED_KEY: Final = web.RequestKey("dropped", bool)  # reply_lost as "reset": no answer was sent

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def envelope(data: Any, **extra: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps({"error": False, "data": data, **extra}), content_type="application/json"
    )


def error(status: int, message: str) -> web.Response:
    body: dict[str, Any] = {"error": True, "message": message}
    if status != 200:
        body["code"] = status
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class TemplateBody(BaseModel):
    labels: dict[str, str] = {}
    taints: list[SimTaint] = []


class Simulator:
    """State, faults and the request log behind one aiohttp application."""

    def __init__(
        self,
        config: SimConfig,
        *,
        clock: Clock | None = None,
        seed: int | None = None,
        state_file: Path | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or RealClock()
        rng = random.Random(seed)  # noqa: S311 - simulation, not security
        self.state = SimState(config, self.clock, rng, state_file)
        self.faults = FaultSet(random.Random(rng.getrandbits(64)))  # noqa: S311
        for spec in config.faults:
            self.faults.add(spec)
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self.strict = config.mode == "strict"

    # --- rendering -----------------------------------------------------------------------------------

    def num(self, value: float) -> Any:
        """Lenient mode sends numbers as strings, as VPSie does on some endpoints (FlexString)."""
        if self.strict:
            return value
        return str(value)

    def render_cluster(self, identifier: str) -> dict[str, Any]:
        state = self.state
        cluster = state.cluster(identifier)
        nodes = state.cluster_nodes(cluster)
        masters = [n for n in nodes if n.group_id is None]
        plan_price = sum(state.plan(n.size).price for n in nodes)
        first = state.plan(nodes[0].size) if nodes else None
        body: dict[str, Any] = {
            "identifier": cluster.identifier,
            "cluster_name": cluster.name,
            "count": len(nodes),
            "managerCount": len(masters),
            "slaveCount": len(nodes) - len(masters),
            "nickname": first.nickname if first else "",
            "cpu": first.cpu if first else 0,
            "ram": first.ram if first else 0,
            "traffic": first.traffic if first else 0,
            "price": self.num(plan_price),
            "color": "#3f7cff",
            "created_by": "Simulated User",
            "created_on": iso(cluster.created),
            "updated_on": iso(cluster.created),
        }
        if not self.strict:
            body.update(
                user_id=USER_ID,
                kube_version=cluster.kube_version,
                lock=0,
                lb_id=None,
                upgrade_version=None,
            )
        return body

    def render_node(self, node: Node) -> dict[str, Any]:
        plan = self.state.plan(node.size)
        body: dict[str, Any] = {
            "id": node.id,
            "user_id": USER_ID,
            "hostname": node.hostname,
            "default_ip": node.ip,
            "private_ip": node.private_ip,
            "node_type": MASTER_NODE_TYPE if node.group_id is None else WORKER_NODE_TYPE,
            "node_id": 33,
            "datacenter_id": self._dc_id(self.state.clusters[node.cluster].datacenter),
            "created_on": iso(node.created),
        }
        if not self.strict:
            body.update(
                identifier=node.identifier,
                ip=node.ip,
                role="master" if node.group_id is None else "slave",
                status="deleting" if node.delete_at is not None else "running",
                cpu=self.num(plan.cpu),
                ram=plan.ram,
                disk=plan.ssd,
                group_id=node.group_id,
            )
        return body

    def render_group(self, group: Group) -> dict[str, Any]:
        plan = self.state.plan(group.size)
        cluster = self.state.clusters[group.cluster]
        return {
            "id": group.id,
            "identifier": group.identifier,
            "group_name": group.name,
            "boxsize_id": group.size,
            "cpu": plan.cpu,
            "ram": self.num(plan.ram),
            "ssd": plan.ssd,
            "traffic": plan.traffic,
            "nodes_count": self.num(len(self.state.group_nodes(group))),
            "cluster_id": cluster.id,
            "project_id": self.config.projects[0].id if self.config.projects else None,
            "user_id": USER_ID,
            "datacenter_id": self._dc_id(cluster.datacenter),
            "dcIdentifier": cluster.datacenter,
            "is_active": 1,
            "is_deleted": 0,
            "notes": None,
            "created_on": iso(group.created),
            "last_updated": iso(group.created),
            "dropped_on": None,
        }

    def _dc_id(self, identifier: str) -> int | None:
        return next((d.id for d in self.config.datacenters if d.identifier == identifier), None)

    def render_vm(self, identifier: str) -> dict[str, Any]:
        state = self.state
        vm = state.vms[identifier]
        plan = state.plans_by_identifier[vm.plan]
        now = state.now()
        active = vm.active(now)
        os_image = next((o for o in self.config.os_images if o.identifier == vm.os), None)
        project = next((p for p in self.config.projects if p.identifier == vm.project), None)
        category = next((c.name for c in self.config.plan_categories if c.identifier == plan.category), "")
        if vm.delete_at is not None:
            vm_state = "deleting"
        elif not active:
            vm_state = "creating"
        else:
            vm_state = "running" if vm.power else "stopped"
        body: dict[str, Any] = {
            "id": vm.id,
            "identifier": vm.identifier,
            "hostname": vm.hostname,
            "user_id": USER_ID,
            "boxsize_id": plan.id,
            "boximage_id": os_image.id if os_image else None,
            "datacenter_id": self._dc_id(vm.datacenter),
            "dcIdentifier": vm.datacenter,
            "node_id": 33,
            ("projectId" if self.strict else "project_id"): project.id if project else None,
            "cpu": plan.cpu,
            "ram": self.num(plan.ram),
            "ssd": plan.ssd,
            "traffic": plan.traffic,
            "default_ip": vm.public_ipv4,
            "default_ipv6": vm.public_ipv6,
            "private_ip": vm.private_ip,
            "publicIp": vm.public_ipv4 or None,
            "is_active": 1 if active else 0,
            "power": vm.power if active else 0,
            "state": vm_state,
            "is_locked": 0,
            "is_suspended": 0,
            "is_terminated": 0,
            "is_deleted": 0,
            "category": category,
            "fullname": os_image.fullname if os_image else "",
            "notes": vm.notes or None,
            "created_on": iso(vm.created),
            "last_updated": iso(max(vm.created, min(now, vm.boot_at))),
            "dropped_on": None,
        }
        return body

    # --- middleware ----------------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        response = await self._serve(request, handler)
        if not path.startswith(ADMIN_PREFIX):
            entry: dict[str, Any] = {"method": request.method, "path": path, "status": response.status}
            if request.body_exists:
                entry["content_type"] = request.content_type
            lost = request.get(LOST_KEY)
            if lost is not None:
                entry["lost"] = lost
                if request.get(DROPPED_KEY):
                    entry["status"] = DROPPED_STATUS
            self.requests.append(entry)
        return response

    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        admin = path.startswith(ADMIN_PREFIX)
        never_boot = False
        after: Fault | None = None  # reply_lost / late_reply: acts on the served answer
        if not admin:
            for fault in self.faults.trigger(request.method, path):
                if fault.kind is FaultKind.LATENCY:
                    if request.can_read_body:
                        # Read the body first: a request held here is still carried out when its client
                        # gives up or dies meanwhile (aiohttp keeps the bytes for the handler).
                        await request.read()
                    await self.clock.sleep(fault.seconds)
                elif fault.kind is FaultKind.NEVER_BOOT:
                    never_boot = True
                elif fault.kind in AFTER_KINDS:
                    after = after or fault
                elif fault.kind is FaultKind.ERROR:
                    return error(fault.status, fault.message)
                elif fault.kind is FaultKind.HTML_502:
                    return web.Response(status=502, text=HTML_502, content_type="text/html")
                elif fault.kind is FaultKind.RATE_LIMIT:
                    resp = error(429, "Too many requests")
                    resp.headers["Retry-After"] = f"{fault.retry_after:g}"
                    return resp
                elif fault.kind is FaultKind.ERROR_200:
                    return error(200, fault.message)
            if request.match_info.http_exception is not None:
                return error(404, "Not found")
            if path != LOGIN_PATH and not self._authenticated(request):
                return error(401, "Please authenticate")
        request[NEVER_BOOT_KEY] = never_boot
        self.state.tick()
        response = await self._handle(request, handler)
        if after is None:
            return response
        return await self._spoil_answer(request, response, after)

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except SimError as exc:
            return error(exc.status, exc.message)
        except web.HTTPNotFound:
            return error(404, "Not found")
        except web.HTTPMethodNotAllowed:
            return error(404, "Not found")

    async def _spoil_answer(
        self, request: web.Request, response: web.StreamResponse, fault: Fault
    ) -> web.StreamResponse:
        """The request has been carried out: delay its answer, or lose it as ``fault.lost_as`` says."""
        log.info(
            "sim.fault_after_serving",
            kind=fault.kind.value,
            lost_as=fault.lost_as,
            method=request.method,
            path=request.path,
            served=response.status,
        )
        if fault.kind is FaultKind.LATE_REPLY:
            await self.clock.sleep(fault.seconds)
            return response
        request[LOST_KEY] = response.status
        if fault.lost_as == "504":
            return web.Response(status=504, text=HTML_504, content_type="text/html")
        if fault.lost_as == "504_json":
            return error(504, "Gateway Timeout")
        if fault.lost_as == "reset":
            transport = request.transport
            if transport is not None:
                transport.abort()  # no status line at all; aiohttp drops the unwritable response
            request[DROPPED_KEY] = True
            return web.Response(status=502, text="connection dropped")
        return web.Response(status=502, text=HTML_502, content_type="text/html")

    def _authenticated(self, request: web.Request) -> bool:
        token = request.headers.get("Vpsie-Auth", "")
        bearer = request.headers.get("Authorization", "")
        candidates = [token]
        if bearer.startswith("Bearer "):
            candidates.append(bearer.removeprefix("Bearer "))
        return any(c and self.state.token_valid(c) for c in candidates)

    # --- body helpers --------------------------------------------------------------------------------

    async def json_body(self, request: web.Request, *, required: bool = True) -> dict[str, Any]:
        raw = await request.read()
        if not raw:
            if required:
                raise SimError(400, "Request body is required")
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise SimError(400, "Invalid JSON body") from None
        if not isinstance(body, dict):
            raise SimError(400, "Request body must be a JSON object")
        return body

    async def any_body(self, request: web.Request) -> dict[str, Any]:
        """JSON or form-urlencoded (the login and the plan list accept both)."""
        if request.content_type == "application/x-www-form-urlencoded":
            return dict((await request.post()).items())
        return await self.json_body(request)

    # --- auth ----------------------------------------------------------------------------------------

    def login_bodies(self) -> str:
        """``json``, ``form`` or ``any``: what :meth:`login` parses (see ``SimConfig.login_body``)."""
        return self.config.login_body or ("json" if self.strict else "any")

    async def login(self, request: web.Request) -> web.Response:
        accepted = self.login_bodies()
        form = request.content_type == "application/x-www-form-urlencoded"
        if accepted == "json" and request.content_type != "application/json":
            raise SimError(400, "Request body must be JSON")
        # A form-only server does not parse JSON: the credentials it looks for are simply absent.
        body = {} if accepted == "form" and not form else await self.any_body(request)
        cid, secret = self.config.client_id, self.config.client_secret
        if not cid or not secret or body.get("clientId") != cid or body.get("clientSecret") != secret:
            raise SimError(401, "Invalid client credentials")
        token, expires = self.state.issue_token()
        refresh = self.state.token_value()  # never accepted: VPSie has no refresh grant
        access = {"token": token, "expires": iso(expires)}
        refresh_value = {"token": refresh, "expires": iso(expires + 30 * 86400)}
        shape = "sdk" if self.strict else self.config.token_shape
        payload: dict[str, Any] = {"error": False}
        if shape in ("sdk", "both"):
            payload["token"] = {"access": access, "refresh": refresh_value}
        if shape in ("as", "both"):
            payload["accessToken"] = access
            payload["refreshToken"] = refresh_value
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    # --- managed Kubernetes --------------------------------------------------------------------------

    async def list_clusters(self, request: web.Request) -> web.Response:
        return envelope([self.render_cluster(c) for c in self.state.clusters])

    async def get_cluster(self, request: web.Request) -> web.Response:
        identifier = request.match_info["cid"]
        body = self.render_cluster(identifier)
        body["nodes"] = [
            self.render_node(n) for n in self.state.cluster_nodes(self.state.cluster(identifier))
        ]
        return envelope(body)

    async def list_groups(self, request: web.Request) -> web.Response:
        cluster = self.state.cluster(request.match_info["cid"])
        return envelope([self.render_group(g) for g in self.state.cluster_groups(cluster)])

    async def create_group(self, request: web.Request) -> web.Response:
        body = await self.json_body(request)
        size = body.get("KubeSizeID")
        if not isinstance(size, int) or isinstance(size, bool):
            raise SimError(400, '"KubeSizeID" must be a number')
        if not body.get("groupName") or not body.get("clusterIdentifier"):
            raise SimError(400, '"clusterIdentifier" and "groupName" are required')
        self.state.create_group(str(body["clusterIdentifier"]), str(body["groupName"]), size)
        return envelope(True)

    async def delete_group(self, request: web.Request) -> web.Response:
        body = await self.json_body(request, required=False)
        if not isinstance(body.get("deleteStatistic"), dict):
            raise SimError(500, "Cannot read properties of undefined (reading 'reason')")
        self.state.delete_group(request.match_info["gid"])
        return envelope(True)

    async def add_node(self, request: web.Request) -> web.Response:
        node = self.state.add_node(
            request.match_info["cid"], int(request.match_info["gid"]), never_boots=request[NEVER_BOOT_KEY]
        )
        log.info("sim.add_node", hostname=node.hostname, never_boots=node.never_boots)
        return envelope(True)

    async def delete_node(self, request: web.Request) -> web.Response:
        body = await self.json_body(request)
        self.state.delete_node(request.match_info["cid"], str(body.get("identifier") or ""))
        return envelope(True)

    async def reduce_group(self, request: web.Request) -> web.Response:
        body = await self.json_body(request)
        group_id = body.get("groupId")
        try:
            gid = int(group_id)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise SimError(400, '"groupId" is required') from None
        self.state.reduce_group(request.match_info["cid"], gid)
        return envelope(True)

    async def offers(self, request: web.Request) -> web.Response:
        body = await self.json_body(request)
        if body.get("dcIdentifier") not in {d.identifier for d in self.config.datacenters}:
            raise SimError(400, "Invalid dcIdentifier")
        return envelope(
            [
                {
                    "id": p.id,
                    "identifier": p.identifier,
                    "name": p.nickname,
                    "cpu": p.cpu,
                    "ram": p.ram,
                    "disk": p.ssd,
                    "price": self.num(p.price),
                    "hourly_price": self.num(round(p.price / HOURS_PER_MONTH, 5)),
                }
                for p in self.config.plans
            ]
        )

    # --- VMs -----------------------------------------------------------------------------------------

    async def list_vms(self, request: web.Request) -> web.Response:
        listed = self.state.listed_vms()
        project = request.query.get("projectId")
        if project is not None:
            listed = [v for v in listed if self._in_project(v.project, project)]
        vms = [self.render_vm(v.identifier) for v in listed]
        return envelope(vms, total=len(vms))

    def _in_project(self, vm_project: str, wanted: str) -> bool:
        """``projectId`` names a project by numeric id (as VPSie lists it) or by identifier."""
        if vm_project == wanted:
            return True
        project = next((p for p in self.config.projects if p.identifier == vm_project), None)
        return project is not None and str(project.id) == wanted

    async def get_vm(self, request: web.Request) -> web.Response:
        try:
            vm = self.state.vm(request.match_info["vid"])
        except SimError:
            return envelope(False)  # VPSie's "not found" for some gets (§3.1)
        return envelope(
            {
                "vmData": self.render_vm(vm.identifier),
                "imageCategories": [],
                "vmTags": [{"identifier": tag_identifier(t), "name": t} for t in vm.tags],
                "privateIpData": [],
                "floatingIpData": [],
            }
        )

    async def pending_vms(self, request: web.Request) -> web.Response:
        entries = []
        for vm in self.state.pending_vms():
            project = next((p.id for p in self.config.projects if p.identifier == vm.project), None)
            entries.append(
                {
                    "id": f"{vm.id}",
                    "user_id": USER_ID,
                    "data": {
                        "resourceIdentifier": vm.plan,
                        "osIdentifier": vm.os,
                        "dcIdentifier": vm.datacenter,
                        "hostname": vm.hostname,
                        "addPublicIpV4": bool(vm.public_ipv4),
                        "addPrivateIp": bool(vm.private_ip),
                        "projectId": project,
                        "processId": vm.process_id,
                        "requestIp": "127.0.0.1",
                        "isCreateFromLibrary": False,
                    },
                    "resourceData": {},
                    "datacenter": [],
                    "osData": {},
                    "running": 1,
                    "type": "vm",
                }
            )
        return envelope(entries)

    async def create_vm(self, request: web.Request) -> web.Response:
        body = await self.json_body(request)
        vm = self.state.create_vm(body, never_boots=request[NEVER_BOOT_KEY])
        log.info("sim.create_vm", hostname=vm.hostname, never_boots=vm.never_boots)
        return envelope(True)

    async def delete_vm(self, request: web.Request) -> web.Response:
        self.state.delete_vm(await self.json_body(request))
        return envelope(True)

    def power(self, on: bool) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            body = await self.json_body(request)
            self.state.power(str(body.get("vmIdentifier") or ""), on)
            return envelope(True)

        return handler

    # --- catalogue -----------------------------------------------------------------------------------

    async def datacenters(self, request: web.Request) -> web.Response:
        rows = [
            {
                "identifier": d.identifier,
                "dc_name": d.dc_name,
                "dc_image": "",
                "state": d.state,
                "country": d.country,
                "is_active": 1,
                "default_selected": 1 if i == 0 else 0,
                "is_deleted": 0,
                "is_fip_available": 1,
                "is_bucket_available": 0,
                "is_private": 0,
            }
            for i, d in enumerate(self.config.datacenters)
        ]
        offset, limit = request.query.get("offset"), request.query.get("limit")
        if offset is not None and limit is not None and offset.isdigit() and limit.isdigit():
            rows = rows[int(offset) : int(offset) + int(limit)]
        return envelope(rows, total=len(self.config.datacenters))

    async def categories(self, request: web.Request) -> web.Response:
        return envelope([{"identifier": c.identifier, "name": c.name} for c in self.config.plan_categories])

    async def resources(self, request: web.Request) -> web.Response:
        if self.strict and request.content_type != "application/x-www-form-urlencoded":
            raise SimError(400, "Request body must be form-urlencoded")
        body = await self.any_body(request)
        if body.get("dcIdentifier") not in {d.identifier for d in self.config.datacenters}:
            raise SimError(400, "Invalid dcIdentifier")
        category = body.get("planCatIdentifier") or ""
        plans = [p for p in self.config.plans if not category or p.category == category]
        return envelope(
            [
                {
                    "id": p.id,
                    "identifier": p.identifier,
                    "nickname": p.nickname,
                    "cpu": p.cpu,
                    "ram": p.ram,
                    "ssd": p.ssd,
                    "traffic": p.traffic,
                    "price": self.num(p.price),
                    "net_speed": 1000,
                }
                for p in plans
            ]
        )

    async def projects(self, request: web.Request) -> web.Response:
        rows = [
            {
                "id": p.id,
                "identifier": p.identifier,
                "name": p.name,
                "description": "",
                "is_default": p.is_default,
                "created_by": USER_ID,
            }
            for p in self.config.projects
        ]
        return envelope({"rows": rows, "count": len(rows)})

    async def ssh_keys(self, request: web.Request) -> web.Response:
        keys = [
            {
                "id": k.id,
                "identifier": k.identifier,
                "name": k.name,
                "user_id": USER_ID,
                "private_key": "ssh-ed25519 AAAA",
            }
            for k in self.config.ssh_keys
        ]
        return envelope(keys, total=len(keys))

    async def scripts(self, request: web.Request) -> web.Response:
        rows = [
            {"identifier": s.identifier, "script_name": s.name, "user_id": USER_ID, "type": "bash"}
            for s in self.config.scripts
        ]
        return envelope(rows, total=len(rows))

    # --- admin ---------------------------------------------------------------------------------------

    async def admin_state(self, request: web.Request) -> web.Response:
        state = self.state
        now = state.now()
        body = {
            "mode": self.config.mode,
            "login_body": self.login_bodies(),
            "logins": state.logins,
            "active_tokens": sum(1 for e in state.tokens.values() if e > now),
            "clusters": [
                {
                    **self.render_cluster(c),
                    "groups": [
                        {**self.render_group(g), "labels": g.labels, "taints": g.taints}
                        for g in state.cluster_groups(state.clusters[c])
                    ],
                    "nodes": [
                        {
                            "identifier": n.identifier,
                            "hostname": n.hostname,
                            "group_id": n.group_id,
                            "phase": self._node_phase(n, now),
                        }
                        for n in state.cluster_nodes(state.clusters[c], visible_only=False)
                    ],
                }
                for c in state.clusters
            ],
            "vms": [
                {
                    "identifier": v.identifier,
                    "hostname": v.hostname,
                    "phase": self._vm_phase(v.identifier, now),
                }
                for v in state.vms.values()
            ],
            "faults": [f.model_dump() for f in self.faults.all()],
        }
        return web.json_response(body)

    @staticmethod
    def _node_phase(node: Node, now: float) -> str:
        if node.delete_at is not None:
            return "deleting"
        return "running" if node.running(now) else "provisioning"

    def _vm_phase(self, identifier: str, now: float) -> str:
        vm = self.state.vms[identifier]
        if vm.delete_at is not None:
            return "deleting"
        if not vm.listed(now):
            return "pending"
        return "running" if vm.active(now) else "creating"

    async def admin_requests(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.requests))

    async def admin_faults(self, request: web.Request) -> web.Response:
        return web.json_response([f.model_dump() for f in self.faults.all()])

    async def admin_add_fault(self, request: web.Request) -> web.Response:
        try:
            spec = FaultSpec.model_validate_json(await request.read())
        except ValidationError as exc:
            return web.json_response({"error": True, "message": str(exc)}, status=400)
        return web.json_response(self.faults.add(spec).model_dump(), status=201)

    async def admin_clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"cleared": True})

    async def admin_remove_fault(self, request: web.Request) -> web.Response:
        if not self.faults.remove(int(request.match_info["fid"])):
            return web.json_response({"error": True, "message": "no such fault"}, status=404)
        return web.json_response({"removed": True})

    async def admin_template(self, request: web.Request) -> web.Response:
        try:
            body = TemplateBody.model_validate_json(await request.read())
        except ValidationError as exc:
            return web.json_response({"error": True, "message": str(exc)}, status=400)
        group = self.state.set_group_template(int(request.match_info["gid"]), body.labels, body.taints)
        return web.json_response({"id": group.id, "labels": group.labels, "taints": group.taints})

    async def admin_expire_tokens(self, request: web.Request) -> web.Response:
        return web.json_response({"expired": self.state.expire_tokens()})

    # --- wiring --------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        app[STATE_KEY] = self.state
        r = app.router
        r.add_post(LOGIN_PATH, self.login)
        k8s = "/apps/v2/k8s"
        r.add_get(f"{k8s}/cluster/all", self.list_clusters)
        r.add_get(f"{k8s}/cluster/byId/{{cid}}", self.get_cluster)
        r.add_get(f"{k8s}/node/groups/byClusterId/{{cid}}", self.list_groups)
        r.add_post(f"{k8s}/cluster/add/group", self.create_group)
        r.add_delete(f"{k8s}/cluster/delete/group/{{gid}}", self.delete_group)
        r.add_post(rf"{k8s}/cluster/byId/{{cid}}/add/slave/group/{{gid:\d+}}", self.add_node)
        r.add_delete(f"{k8s}/cluster/byId/{{cid}}/delete/slave", self.delete_node)
        r.add_delete(f"{k8s}/cluster/byId/{{cid}}/reduce/slave", self.reduce_group)
        r.add_post(f"{k8s}/offers", self.offers)
        for prefix in VM_PATHS:
            r.add_get(prefix, self.list_vms)
            r.add_post(prefix, self.create_vm)
            r.add_delete(prefix, self.delete_vm)
            r.add_get(f"{prefix}/pending", self.pending_vms)
            r.add_post(f"{prefix}/start", self.power(True))
            r.add_post(f"{prefix}/restart", self.power(True))
            r.add_post(f"{prefix}/stop", self.power(False))
            r.add_get(f"{prefix}/{{vid}}", self.get_vm)
        r.add_get("/apps/v2/datacenter", self.datacenters)
        r.add_get("/api/v2/plans/category", self.categories)
        r.add_post("/apps/v2/resources", self.resources)
        r.add_get("/apps/v2/projects", self.projects)
        r.add_get("/apps/v2/sshkeys", self.ssh_keys)
        r.add_get("/apps/v2/scripts", self.scripts)
        r.add_get(f"{ADMIN_PREFIX}/state", self.admin_state)
        r.add_get(f"{ADMIN_PREFIX}/requests", self.admin_requests)
        r.add_get(f"{ADMIN_PREFIX}/faults", self.admin_faults)
        r.add_post(f"{ADMIN_PREFIX}/faults", self.admin_add_fault)
        r.add_delete(f"{ADMIN_PREFIX}/faults", self.admin_clear_faults)
        r.add_delete(rf"{ADMIN_PREFIX}/faults/{{fid:\d+}}", self.admin_remove_fault)
        r.add_post(rf"{ADMIN_PREFIX}/groups/{{gid:\d+}}/template", self.admin_template)
        r.add_post(f"{ADMIN_PREFIX}/tokens/expire", self.admin_expire_tokens)
        return app
