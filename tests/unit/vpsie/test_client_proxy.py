"""The VPSie client honours ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` like curl does.

A real proxy runs on 127.0.0.1 (CONNECT tunnels and absolute-form forwarding, the two ways HTTP
clients use a proxy) in front of the real simulator. Over HTTPS the client must tunnel with
``CONNECT host:port`` and still verify the server's certificate (here from a test CA trusted through
``SSL_CERT_FILE``, the chart's documented way to add a CA bundle); a host in ``NO_PROXY`` is reached
directly. The HTTPS cases run the client in a child process: the process's CA bundle is read when the
TLS stack starts, so the child gets ``SSL_CERT_FILE`` from its environment like the controller does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.vpsie import API_TOKEN, running_simulator, server_url, sim_config
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig

ROOT = Path(__file__).resolve().parents[3]
PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy", "ALL_PROXY")
CHILD_TIMEOUT_S = 60.0
HEAD_LIMIT = 64 * 1024

# The child: one authenticated read through the real client, configured from the environment.
CHILD = """
import asyncio, os, sys
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig

async def main() -> None:
    config = VPSieClientConfig(base_url=os.environ["TEST_BASE_URL"], api_token=os.environ["TEST_TOKEN"])
    async with VPSieClient(config) as client:
        print(len(await client.list_datacenters()))

asyncio.run(main())
"""


@dataclass
class Proxy:
    """A minimal HTTP proxy: ``CONNECT`` tunnels and absolute-form forwarding; logs request lines."""

    seen: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        request_line, *headers = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
        self.seen.append(f"{method} {target}")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # absolute-form: forward as origin-form, one request per connection
            rest = target.removeprefix("http://")
            authority, _, path = rest.partition("/")
            host, port = authority.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            hop_by_hop = ("connection:", "proxy-connection:")
            kept = [h for h in headers if h and not h.lower().startswith(hop_by_hop)]
            head_out = "\r\n".join([f"{method} /{path} {version}", *kept, "Connection: close", "", ""])
            up_writer.write(head_out.encode("latin-1"))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    p = Proxy()
    server = await asyncio.start_server(p.handle, "127.0.0.1", 0, limit=HEAD_LIMIT)
    port = server.sockets[0].getsockname()[1]
    p.url = f"http://127.0.0.1:{port}"
    async with server:
        yield p
        server.close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Start from an environment without any proxy setting (the machine's own must not leak in)."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- plain HTTP (the simulator on loopback): forwarding ---------------------------------------------------


async def _list_datacenters(base_url: str) -> int:
    config = VPSieClientConfig(base_url=base_url, api_token=API_TOKEN)
    async with VPSieClient(config, clock=FakeClock()) as client:
        return len(await client.list_datacenters())


async def test_http_proxy_carries_the_calls(proxy: Proxy, no_proxy_env: pytest.MonkeyPatch) -> None:
    async with running_simulator(sim_config()) as (_, url):
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        assert await _list_datacenters(url) > 0
    assert proxy.seen == [f"GET {url}/apps/v2/datacenter"]


async def test_no_proxy_hosts_are_reached_directly(proxy: Proxy, no_proxy_env: pytest.MonkeyPatch) -> None:
    async with running_simulator(sim_config()) as (_, url):
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        no_proxy_env.setenv("NO_PROXY", "example.com,127.0.0.1")
        assert await _list_datacenters(url) > 0
    assert proxy.seen == []


# --- HTTPS: CONNECT tunnel, certificate still verified ----------------------------------------------------


@dataclass(frozen=True)
class CertAuthority:
    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    """A CA and a server certificate for ``localhost`` signed by it."""
    directory = tmp_path_factory.mktemp("ca")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy-test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return CertAuthority(ca_file, context)


@pytest.fixture
async def tls_simulator(test_ca: CertAuthority) -> AsyncIterator[str]:
    """The simulator over TLS on 127.0.0.1, addressed as ``https://localhost:<port>``."""
    sim = Simulator(sim_config(), seed=7)
    server = TestServer(sim.app(), host="127.0.0.1")
    await server.start_server(ssl=test_ca.server_context)
    try:
        port = server_url(server).rsplit(":", 1)[1]
        yield f"https://localhost:{port}"
    finally:
        await server.close()


async def _child(base_url: str, ca_file: Path, env: dict[str, str]) -> tuple[int, str]:
    child_env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    child_env.update(env, TEST_BASE_URL=base_url, TEST_TOKEN=API_TOKEN, SSL_CERT_FILE=str(ca_file))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        cwd=ROOT,
        env=child_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT_S)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_https_calls_tunnel_through_the_proxy_with_connect(
    proxy: Proxy, tls_simulator: str, test_ca: CertAuthority
) -> None:
    code, out = await _child(tls_simulator, test_ca.ca_file, {"HTTPS_PROXY": proxy.url})
    assert code == 0, out
    assert int(out.strip().splitlines()[-1]) > 0
    assert proxy.seen == [f"CONNECT {tls_simulator.removeprefix('https://')}"]


async def test_https_no_proxy_host_is_reached_directly(
    proxy: Proxy, tls_simulator: str, test_ca: CertAuthority
) -> None:
    code, out = await _child(
        tls_simulator, test_ca.ca_file, {"HTTPS_PROXY": proxy.url, "NO_PROXY": "localhost"}
    )
    assert code == 0, out
    assert proxy.seen == []


async def test_the_tunnel_does_not_weaken_certificate_checks(proxy: Proxy, tls_simulator: str) -> None:
    """Without the CA the call through the proxy fails: the tunnel is end-to-end TLS to VPSie."""
    code, out = await _child(tls_simulator, Path("/nonexistent-ca.pem"), {"HTTPS_PROXY": proxy.url})
    assert code != 0
    assert "certificate" in out.lower(), out
    assert set(proxy.seen) == {f"CONNECT {tls_simulator.removeprefix('https://')}"}  # retried, never plain
