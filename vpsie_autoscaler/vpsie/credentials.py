"""VPSie credentials from a mounted Secret directory (``VPSIE_AUTOSCALER_VPSIE_CREDENTIALS_DIR``).

The Secret holds either ``clientId`` + ``clientSecret`` or ``apiToken`` (one file per key, as Kubernetes
mounts Secret keys). Values are stripped of surrounding whitespace (``echo`` adds a newline). Each
problem gets an error that names the file, never its content. Re-reading the directory and handing the
result to :meth:`VPSieClient.update_credentials` rotates credentials without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CLIENT_ID_FILE = "clientId"
CLIENT_SECRET_FILE = "clientSecret"  # noqa: S105 - a file name, not a secret
API_TOKEN_FILE = "apiToken"  # noqa: S105 - a file name, not a secret


class CredentialsError(Exception):
    """The credentials directory cannot be used; the message says which file is wrong."""


@dataclass(frozen=True)
class Credentials:
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)


def _read(directory: Path, name: str) -> str | None:
    path = directory / name
    if not path.exists():
        return None
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror}") from None
    if not value:
        raise CredentialsError(f"{path} is empty")
    return value


def read_credentials_dir(directory: str | Path) -> Credentials:
    """The credentials in ``directory``: ``apiToken``, or both ``clientId`` and ``clientSecret``."""
    base = Path(directory)
    if not base.is_dir():
        raise CredentialsError(f"VPSie credentials directory {base} does not exist")
    client_id = _read(base, CLIENT_ID_FILE)
    client_secret = _read(base, CLIENT_SECRET_FILE)
    api_token = _read(base, API_TOKEN_FILE)
    if api_token and (client_id or client_secret):
        raise CredentialsError(
            f"{base} holds both {API_TOKEN_FILE} and {CLIENT_ID_FILE}/{CLIENT_SECRET_FILE}; keep one kind"
        )
    if api_token:
        return Credentials(api_token=api_token)
    if client_id and client_secret:
        return Credentials(client_id=client_id, client_secret=client_secret)
    missing = CLIENT_SECRET_FILE if client_id else CLIENT_ID_FILE
    if not (client_id or client_secret):
        raise CredentialsError(
            f"{base} has neither {API_TOKEN_FILE} nor {CLIENT_ID_FILE}/{CLIENT_SECRET_FILE}"
        )
    raise CredentialsError(f"{base} is missing {missing}")
