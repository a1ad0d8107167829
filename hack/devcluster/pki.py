"""Certificates and keys for the local control plane, and the kubeconfig files that use them.

Follows what envtest (controller-runtime ``pkg/internal/testing/controlplane``) and kwokctl
(``pkg/kwokctl/pki``) generate, reduced to what a single-host cluster needs:

* one self-signed CA that signs every certificate and is the apiserver's ``--client-ca-file``;
* a serving certificate for kube-apiserver with the SANs a client may dial (Go ignores the CN);
* an admin client certificate in group ``system:masters`` used by the harness, the controller
  manager, the scheduler and kwok;
* a front-proxy client certificate, so the apiserver publishes a request-header CA (aggregated
  APIs such as metrics-server work, and the scheduler and controller manager stop complaining);
  kubeadm uses a separate front-proxy CA, a single-user dev cluster does not need one;
* an RSA key pair for signing ServiceAccount tokens (``--service-account-signing-key-file``), so
  ``TokenRequest`` works and the token controller can run.

ECDSA P-256 keeps generation fast. Certificates carry KeyUsage, SubjectKeyIdentifier and
AuthorityKeyIdentifier so OpenSSL's strict X.509 mode (the default for Python >= 3.13 SSL contexts)
accepts them; Go does not need them.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Go rejects certificates that are not yet valid; a small backdate absorbs clock skew between the
# moment we sign and the moment a component first checks.
NOT_BEFORE_BACKDATE = dt.timedelta(hours=1)
# A dev cluster lives for hours; a month leaves room for a forgotten `make devcluster`.
VALIDITY = dt.timedelta(days=30)
# kube-apiserver requires RSA for ServiceAccount signing keys it also verifies with; 2048 is the
# size kubeadm generates.
SA_KEY_BITS = 2048
RSA_PUBLIC_EXPONENT = 65537

# Names the apiserver can be reached by: loopback for host processes, the in-cluster DNS names and
# the first service IP of --service-cluster-ip-range for anything that resolves them.
APISERVER_DNS_SANS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
APISERVER_IP_SANS = ("127.0.0.1", "10.96.0.1")
ADMIN_USER = "devcluster-admin"
ADMIN_GROUP = "system:masters"
# The identity kube-apiserver uses towards aggregated API servers (``--proxy-client-cert-file``);
# controllers and the scheduler read the matching request-header CA to authenticate such requests.
FRONT_PROXY_USER = "front-proxy-client"
CLUSTER_NAME = "devcluster"


@dataclass(frozen=True)
class Pki:
    """Paths of the generated PEM files. Private keys are written with mode 0600."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def front_proxy_cert(self) -> Path:
        return self.directory / "front-proxy-client.crt"

    @property
    def front_proxy_key(self) -> Path:
        return self.directory / "front-proxy-client.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _sign(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    eku: tuple[x509.ObjectIdentifier, ...] = (),
    sans: tuple[x509.GeneralName, ...] = (),
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - NOT_BEFORE_BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=ca,
                crl_sign=ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    # Create private files with 0600 from the start instead of chmod-ing after the secret is on disk.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def generate(directory: Path) -> Pki:
    """Write a fresh CA, apiserver serving cert, admin client cert and SA key pair into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("devcluster-ca")
    ca = _sign(ca_name, ca_key, ca_name, ca_key, ca=True)

    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: tuple[x509.GeneralName, ...] = tuple(x509.DNSName(d) for d in APISERVER_DNS_SANS) + tuple(
        x509.IPAddress(ipaddress.ip_address(a)) for a in APISERVER_IP_SANS
    )
    server = _sign(
        _name("kube-apiserver"),
        server_key,
        ca_name,
        ca_key,
        eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
        sans=sans,
    )

    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _sign(
        _name(ADMIN_USER, ADMIN_GROUP), admin_key, ca_name, ca_key, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)
    )

    proxy_key = ec.generate_private_key(ec.SECP256R1())
    proxy = _sign(_name(FRONT_PROXY_USER), proxy_key, ca_name, ca_key, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))

    sa_key = rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=SA_KEY_BITS)

    _write(pki.ca_cert, _cert_pem(ca))
    _write(pki.ca_key, _key_pem(ca_key), private=True)
    _write(pki.apiserver_cert, _cert_pem(server))
    _write(pki.apiserver_key, _key_pem(server_key), private=True)
    _write(pki.admin_cert, _cert_pem(admin))
    _write(pki.admin_key, _key_pem(admin_key), private=True)
    _write(pki.front_proxy_cert, _cert_pem(proxy))
    _write(pki.front_proxy_key, _key_pem(proxy_key), private=True)
    _write(pki.sa_key, _key_pem(sa_key), private=True)
    _write(
        pki.sa_pub,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return pki


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _kubeconfig(server: str, ca_pem: bytes, user_name: str, user: dict[str, str]) -> str:
    # JSON is valid YAML; every kubeconfig loader (client-go, kubernetes-asyncio, helm) reads it.
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user_name}}],
        "current-context": CLUSTER_NAME,
    }
    return json.dumps(doc, indent=2) + "\n"


def write_admin_kubeconfig(path: Path, server: str, pki: Pki) -> Path:
    """Write a self-contained admin kubeconfig (certificates embedded, so the file can be copied)."""
    user = {
        "client-certificate-data": _b64(pki.admin_cert.read_bytes()),
        "client-key-data": _b64(pki.admin_key.read_bytes()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, _kubeconfig(server, pki.ca_cert.read_bytes(), ADMIN_USER, user).encode(), private=True)
    return path


def write_token_kubeconfig(path: Path, server: str, ca_pem: bytes, user_name: str, token: str) -> Path:
    """Write a kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, _kubeconfig(server, ca_pem, user_name, {"token": token}).encode(), private=True)
    return path
