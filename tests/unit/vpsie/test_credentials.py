"""Credentials from a mounted Secret directory: either kind, whitespace-tolerant, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vpsie_autoscaler.vpsie.credentials import CredentialsError, read_credentials_dir


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
        ({}, "neither apiToken nor clientId/clientSecret"),
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


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="does not exist"):
        read_credentials_dir(tmp_path / "nope")
