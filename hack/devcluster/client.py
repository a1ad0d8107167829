"""A tiny synchronous JSON client for the Kubernetes API, for test fixtures and the demo harness.

Why not kubernetes-asyncio: fixtures run outside any event loop and must stay independent of the
code under test, and the harness must work before the project's own package is importable. The
client speaks the REST paths directly (``/api/v1/namespaces/x/pods``) with ``http.client`` over
TLS: either the admin client certificate or a bearer token, always verifying the cluster CA.

Errors follow the API's own vocabulary: an ``ApiError`` carries the HTTP status and the decoded
``Status`` object (``reason``, ``message``), like client-go's ``StatusError``.

Every wait has a deadline and an optional liveness hook, so a dead control-plane component ends
the wait at once with that component's log tail instead of a timeout minutes later.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

JsonObj = dict[str, Any]
T = TypeVar("T")

# One request should never take long against a local apiserver; a generous bound still ends a hang.
REQUEST_TIMEOUT_S = 30.0
# Poll interval for waits: short enough that tests measuring "Ready within 10 s" are accurate,
# long enough not to load a 2-core machine.
POLL_INTERVAL_S = 0.2
DEFAULT_WAIT_S = 60.0
# An hour covers any test run; short-lived tokens keep a leaked kubeconfig nearly harmless.
DEFAULT_TOKEN_SECONDS = 3600
# Taints kube-controller-manager and admission put on Nodes that are not (yet) healthy.
NODE_LIFECYCLE_TAINT_PREFIX = "node.kubernetes.io/"
STATUS_NOT_FOUND = 404
STATUS_CONFLICT = 409


class ApiError(Exception):
    """A non-success answer from the API server, with the decoded ``Status`` body when present."""

    def __init__(self, method: str, path: str, status: int, body: JsonObj | str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        detail = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"{method} {path} -> {status}: {detail}")

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", "")) if isinstance(self.body, dict) else ""

    @property
    def message(self) -> str:
        return str(self.body.get("message", "")) if isinstance(self.body, dict) else str(self.body)


class WaitTimeout(TimeoutError):
    """A condition did not hold before its deadline; the message names it and the last object seen."""


def is_not_found(err: Exception) -> bool:
    return isinstance(err, ApiError) and err.status == STATUS_NOT_FOUND


def _ssl_context(
    ca_pem: bytes, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    if cert_pem is not None and key_pem is not None:
        # load_cert_chain only reads files; keep the key on disk only for the duration of the call.
        with tempfile.TemporaryDirectory(prefix="devcluster-tls-") as tmp:
            cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            cert_file.write_bytes(cert_pem)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key_pem)
            ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _pem(user_or_cluster: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    if f"{key}-data" in user_or_cluster:
        return base64.b64decode(user_or_cluster[f"{key}-data"])
    if key in user_or_cluster:
        path = Path(user_or_cluster[key])
        return (path if path.is_absolute() else base / path).read_bytes()
    return None


class DevKubeClient:
    """Synchronous JSON access to one API server. Thread-compatible: each call opens its own connection."""

    def __init__(
        self,
        server: str,
        ca_pem: bytes,
        *,
        cert_pem: bytes | None = None,
        key_pem: bytes | None = None,
        token: str | None = None,
        liveness: Callable[[], None] | None = None,
    ) -> None:
        url = urllib.parse.urlsplit(server)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"API server URL must be https://host:port, got {server!r}")
        if token is None and (cert_pem is None or key_pem is None):
            raise ValueError("DevKubeClient needs a bearer token or a client certificate and key")
        self.server = server
        self.ca_pem = ca_pem
        self._host = url.hostname
        self._port = url.port or 443
        self._token = token
        self._ssl = _ssl_context(ca_pem, cert_pem, key_pem)
        self._liveness = liveness

    @classmethod
    def from_kubeconfig(cls, path: Path, liveness: Callable[[], None] | None = None) -> DevKubeClient:
        """Load the current context of a kubeconfig (inline ``*-data`` or file references, or a token)."""
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError(f"{path} is not a kubeconfig")
        context_name = doc.get("current-context")
        context = next((c["context"] for c in doc.get("contexts", []) if c["name"] == context_name), None)
        if context is None:
            raise ValueError(f"{path}: current-context {context_name!r} not found")
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == context["user"])
        base = path.parent
        ca = _pem(cluster, "certificate-authority", base)
        if ca is None:
            raise ValueError(f"{path}: the cluster has no certificate-authority; refusing to skip TLS checks")
        return cls(
            cluster["server"],
            ca,
            cert_pem=_pem(user, "client-certificate", base),
            key_pem=_pem(user, "client-key", base),
            token=user.get("token"),
            liveness=liveness,
        )

    def with_token(self, token: str) -> DevKubeClient:
        """The same server and CA, authenticated as the holder of ``token`` (RBAC applies)."""
        return DevKubeClient(self.server, self.ca_pem, token=token, liveness=self._liveness)

    # --- raw requests -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: JsonObj | None = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JsonObj:
        """Send one request; return the decoded JSON body or raise ``ApiError`` for status >= 400."""
        target = path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        conn = http.client.HTTPSConnection(
            self._host, self._port, context=self._ssl, timeout=REQUEST_TIMEOUT_S
        )
        try:
            conn.request(method, target, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            decoded: JsonObj | str = json.loads(raw) if raw else {}
        except ValueError:
            decoded = raw.decode(errors="replace")
        if resp.status >= 400:
            raise ApiError(method, path, resp.status, decoded)
        return decoded if isinstance(decoded, dict) else {"raw": decoded}

    def get(self, path: str, *, query: Mapping[str, str] | None = None) -> JsonObj:
        return self.request("GET", path, query=query)

    def get_or_none(self, path: str) -> JsonObj | None:
        try:
            return self.get(path)
        except ApiError as err:
            if err.status == STATUS_NOT_FOUND:
                return None
            raise

    def create(self, path: str, body: JsonObj) -> JsonObj:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, patch: JsonObj) -> JsonObj:
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(self, path: str, *, missing_ok: bool = True) -> None:
        try:
            self.request("DELETE", path)
        except ApiError as err:
            if not (missing_ok and err.status == STATUS_NOT_FOUND):
                raise

    def list_objects(self, path: str, *, label_selector: str | None = None) -> list[JsonObj]:
        query = {"labelSelector": label_selector} if label_selector else None
        items: list[JsonObj] = self.get(path, query=query).get("items", [])
        return items

    # --- waits ----------------------------------------------------------------------------------

    def wait_for(
        self,
        path: str,
        predicate: Callable[[JsonObj | None], bool],
        *,
        timeout: float = DEFAULT_WAIT_S,
        what: str = "",
    ) -> JsonObj | None:
        """Poll ``GET path`` until ``predicate(obj)`` (``obj`` is None while it does not exist) holds.

        Raises ``WaitTimeout`` naming ``what`` and showing the last object seen; if a liveness hook
        is set (the harness sets one), a dead control-plane component ends the wait at once.
        """
        return self.wait_until(lambda: self.get_or_none(path), predicate, timeout=timeout, what=what or path)

    def wait_until(
        self,
        fetch: Callable[[], T],
        predicate: Callable[[T], bool],
        *,
        timeout: float = DEFAULT_WAIT_S,
        what: str,
    ) -> T:
        """Generic form of ``wait_for``: poll ``fetch()`` until ``predicate`` holds or the deadline passes."""
        deadline = time.monotonic() + timeout
        while True:
            if self._liveness is not None:
                self._liveness()
            value = fetch()
            if predicate(value):
                return value
            if time.monotonic() >= deadline:
                shown = json.dumps(value, default=str)[:2000]
                raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {shown}")
            time.sleep(POLL_INTERVAL_S)

    def wait_gone(self, path: str, *, timeout: float = DEFAULT_WAIT_S, what: str = "") -> None:
        self.wait_for(path, lambda obj: obj is None, timeout=timeout, what=what or f"{path} to be deleted")

    # --- conveniences the fixtures need ------------------------------------------------------------

    def version(self) -> JsonObj:
        return self.get("/version")

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> JsonObj:
        body: JsonObj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        if labels:
            body["metadata"]["labels"] = dict(labels)
        return self.create("/api/v1/namespaces", body)

    def delete_namespace(self, name: str) -> None:
        self.delete(f"/api/v1/namespaces/{name}")

    def create_node(self, body: JsonObj) -> JsonObj:
        return self.create("/api/v1/nodes", body)

    def delete_node(self, name: str) -> None:
        self.delete(f"/api/v1/nodes/{name}")

    def delete_nodes(self, label_selector: str) -> list[str]:
        """Delete every Node matching ``label_selector``; return their names."""
        if not label_selector:
            raise ValueError("refusing to delete every node: label_selector is empty")
        names = [
            n["metadata"]["name"] for n in self.list_objects("/api/v1/nodes", label_selector=label_selector)
        ]
        for name in names:
            self.delete_node(name)
        return names

    def wait_node_ready(
        self, name: str, *, timeout: float = DEFAULT_WAIT_S, schedulable: bool = True
    ) -> JsonObj:
        """Wait for ``Ready=True`` and, by default, for the node lifecycle controller to lift its taints.

        A Node turns Ready (kwok) a moment before kube-controller-manager removes the
        ``node.kubernetes.io/not-ready`` taint that admission put on it; until then the scheduler
        rightly refuses it. ``schedulable=False`` waits only for the condition.
        """

        def ready(node: JsonObj | None) -> bool:
            if not condition_is(node, "Ready", "True"):
                return False
            return not schedulable or not lifecycle_taints(node)

        node = self.wait_for(f"/api/v1/nodes/{name}", ready, timeout=timeout, what=f"node {name} to be Ready")
        assert node is not None
        return node

    def request_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: list[str] | None = None,
        expiration_seconds: int = DEFAULT_TOKEN_SECONDS,
    ) -> str:
        """``TokenRequest`` (``serviceaccounts/token``), as ``kubectl create token`` does."""
        spec: JsonObj = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = audiences
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        res = self.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token", body)
        return str(res["status"]["token"])


def condition_is(obj: JsonObj | None, cond_type: str, status: str) -> bool:
    """True when ``obj.status.conditions`` holds ``cond_type`` with ``status`` (as kubectl wait does)."""
    if obj is None:
        return False
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == cond_type:
            return bool(cond.get("status") == status)
    return False


def lifecycle_taints(node: JsonObj | None) -> list[JsonObj]:
    """Taints the node lifecycle controller manages (``node.kubernetes.io/not-ready``, ``unreachable``…)."""
    if node is None:
        return []
    taints: list[JsonObj] = node.get("spec", {}).get("taints", []) or []
    return [t for t in taints if str(t.get("key", "")).startswith(NODE_LIFECYCLE_TAINT_PREFIX)]


def find_condition(obj: JsonObj | None, cond_type: str) -> JsonObj | None:
    if obj is None:
        return None
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == cond_type:
            return dict(cond)
    return None


@contextlib.contextmanager
def suppress_not_found() -> Iterator[None]:
    """Cleanup helper: ignore 404 from objects that are already gone."""
    try:
        yield
    except ApiError as err:
        if err.status != STATUS_NOT_FOUND:
            raise
