"""Where the client connects: in-cluster service account (token refreshed) or a kubeconfig file."""

from __future__ import annotations

from pathlib import Path

import pytest

from vpsie_autoscaler.kube.config import KubeConfigError, in_cluster_namespace, load_configuration


@pytest.fixture
def service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import kubernetes_asyncio.config.incluster_config as incluster

    (tmp_path / "token").write_text("tok-1\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    return tmp_path


async def test_in_cluster_uses_the_service_account_and_refreshes_its_token(service_account: Path) -> None:
    cfg = await load_configuration()
    assert cfg.host == "https://10.96.0.1:443"
    assert (await cfg.get_api_key_with_prefix("BearerToken")) == "Bearer tok-1"
    assert cfg.refresh_api_key_hook is not None, "projected tokens rotate: the file is re-read"
    assert cfg.ssl_ca_cert == str(service_account / "ca.crt")


async def test_outside_a_cluster_without_kubeconfig_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match="in-cluster service account"):
        await load_configuration()


async def test_kubeconfig_with_a_token_and_a_context(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        """
apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://a.example:6443", insecure-skip-tls-verify: true}
- name: b
  cluster: {server: "https://b.example:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: tok-2}
contexts:
- name: ctx-a
  context: {cluster: a, user: u}
- name: ctx-b
  context: {cluster: b, user: u}
current-context: ctx-a
"""
    )
    assert (await load_configuration(str(kubeconfig))).host == "https://a.example:6443"
    cfg = await load_configuration(str(kubeconfig), context="ctx-b")
    assert cfg.host == "https://b.example:6443"
    assert (await cfg.get_api_key_with_prefix("BearerToken")) == "Bearer tok-2"


async def test_a_broken_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncurrent-context: nope\n")
    with pytest.raises(KubeConfigError, match="cannot load kubeconfig"):
        await load_configuration(str(kubeconfig))


def test_namespace_falls_back_outside_a_pod() -> None:
    assert in_cluster_namespace() == "kube-system"
