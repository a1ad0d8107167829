"""Credentials from a mounted Secret directory: ours and the stock ``vpsie-secret`` (``token``, ``url``,
hints), whitespace-tolerant, clear errors that never quote a value."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpsie_autoscaler.vpsie.credentials import (
    CredentialsError,
    SecretHints,
    normalize_base_url,
    read_credentials_dir,
)

SECRET = "s3cr3t-Vq8-never-shown"


def write(directory: Path, **files: str) -> Path:
    for name, value in files.items():
        (directory / name).write_text(value)
    return directory


def test_client_credentials_are_read_and_stripped(tmp_path: Path) -> None:
    creds = read_credentials_dir(write(tmp_path, clientId="id\n", clientSecret=" s3cret\n"))
    assert (creds.client_id, creds.client_secret, creds.api_token) == ("id", "s3cret", None)
    assert "s3cret" not in repr(creds)


def test_api_token_is_read(tmp_path: Path) -> None:
    creds = read_credentials_dir(write(tmp_path, apiToken="tok\n"))
    assert creds.api_token == "tok"
    assert "tok" not in repr(creds)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, r"neither apiToken \(or token\) nor clientId/clientSecret"),
        ({"url": "https://api.vpsie.com"}, "neither apiToken"),
        ({"clientSecret": SECRET, "url": "https://api.vpsie.com/apps/v2"}, "missing clientId"),
        ({"token": "", "url": "https://api.vpsie.com"}, "token is empty"),
        ({"token": "a b"}, "token holds spaces"),
        ({"token": "Bearer\tabc"}, "token holds spaces or control characters"),
        ({"clientId": "id", "clientSecret": "one\ntwo"}, "clientSecret holds control characters"),
        ({"apiToken": "t1", "token": "t2"}, "both apiToken and token"),
        ({"token": "t", "url": "ftp://api.vpsie.com"}, "url must be an https:// URL"),
        ({"token": "t", "url": "api.vpsie.com"}, "url must be an https:// URL"),
        ({"token": "t", "url": f"https://user:{SECRET}@api.vpsie.com"}, "must not carry credentials"),
        ({"token": "t", "url": "https://api.vpsie.com/other/path"}, "must be the VPSie API root"),
        ({"token": "t", "url": "https://api.vpsie.com:99999"}, "url is not a URL"),
        ({"clientId": "id"}, "missing clientSecret"),
        ({"clientSecret": "s"}, "missing clientId"),
        ({"clientId": "id", "clientSecret": "  \n"}, "clientSecret is empty"),
        ({"apiToken": "t", "clientId": "id"}, "keep one kind"),
    ],
)
def test_bad_directories_say_which_file(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(CredentialsError, match=message) as exc:
        read_credentials_dir(write(tmp_path, **files))
    assert "  \n" not in str(exc.value)
    assert SECRET not in str(exc.value)
    for value in files.values():
        if len(value) > 3:  # file names and short words may appear; values never do
            assert value not in str(exc.value)


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="does not exist"):
        read_credentials_dir(tmp_path / "nope")


def test_the_stock_vpsie_secret_token_and_url_are_read(tmp_path: Path) -> None:
    creds = read_credentials_dir(
        write(
            tmp_path,
            token=f"{SECRET}\n",
            url="https://api.vpsie.com/apps/v2/\n",
            resourceIdentifier="a3f0c2d4-5b6e-11ef-9c1a-0050569c68dc",
            datacenterId="55f06b85-c9ee-11ed-a8a3-0050569c68dc",
            projectId="",  # optional hints may be empty
        )
    )
    assert (creds.api_token, creds.base_url) == (SECRET, "https://api.vpsie.com")
    assert creds.hints == SecretHints(
        cluster_identifier="a3f0c2d4-5b6e-11ef-9c1a-0050569c68dc",
        datacenter_id="55f06b85-c9ee-11ed-a8a3-0050569c68dc",
        project_id=None,
    )
    assert SECRET not in repr(creds)


def test_the_stock_token_wins_over_client_credentials_as_in_the_go_system(tmp_path: Path) -> None:
    creds = read_credentials_dir(write(tmp_path, token="tok", clientId="id", clientSecret=SECRET))
    assert (creds.api_token, creds.client_id, creds.client_secret) == ("tok", None, None)
    assert creds.ignored == ("clientId", "clientSecret")


def test_the_stock_secret_with_client_credentials_and_a_url(tmp_path: Path) -> None:
    creds = read_credentials_dir(
        write(tmp_path, clientId="id", clientSecret=SECRET, url="http://127.0.0.1:8090")
    )
    assert (creds.client_id, creds.client_secret, creds.base_url) == ("id", SECRET, "http://127.0.0.1:8090")


def test_a_secret_without_url_leaves_the_base_url_to_the_settings(tmp_path: Path) -> None:
    assert read_credentials_dir(write(tmp_path, apiToken="tok")).base_url is None


def test_a_value_that_is_not_utf8_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "token").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(CredentialsError, match="token is not UTF-8 text"):
        read_credentials_dir(tmp_path)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.vpsie.com", "https://api.vpsie.com"),
        ("https://api.vpsie.com/", "https://api.vpsie.com"),
        ("https://api.vpsie.com/apps/v2", "https://api.vpsie.com"),
        ("https://api.vpsie.com/v2/", "https://api.vpsie.com"),  # the Go system's default base
        ("https://api2.vpsie.com/api/v2", "https://api2.vpsie.com"),
        ("http://127.0.0.1:8090/apps/v2", "http://127.0.0.1:8090"),
    ],
)
def test_the_url_keeps_only_the_api_root(url: str, expected: str) -> None:
    assert normalize_base_url(url) == expected


@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    port=st.none() | st.integers(1, 65535),
    prefix=st.sampled_from(["", "/", "/apps/v2", "/api/v2", "/v2", "/apps/v2/"]),
    scheme=st.sampled_from(["https", "http"]),
)
def test_normalizing_is_idempotent_and_drops_every_api_prefix(
    host: str, port: int | None, prefix: str, scheme: str
) -> None:
    root = f"{scheme}://{host}" + (f":{port}" if port else "")
    assert normalize_base_url(root + prefix) == root
    assert normalize_base_url(normalize_base_url(root + prefix)) == root
