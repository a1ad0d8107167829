"""VPSie credentials from a mounted Secret directory (``VPSIE_AUTOSCALER_VPSIE_CREDENTIALS_DIR``).

Kubernetes mounts each key of a Secret as a file. Two layouts are read:

- ours: ``clientId`` + ``clientSecret`` (token exchange), or ``apiToken`` (a console API token);
- the stock ``vpsie-secret`` that VPSie's Go autoscaler read, which VPSie
  managed clusters ship: ``token`` (an API token), or ``clientId`` + ``clientSecret``; optional ``url``
  (the API base URL) and the discovery hints ``resourceIdentifier`` (the VPSie cluster), ``datacenterId``
  and ``projectId``. As in the Go system, ``token`` wins over ``clientId``/``clientSecret`` when both
  are present (the pair is then ignored, and :attr:`Credentials.ignored` says so); our own ``apiToken``
  beside the pair stays an error, because nothing says which one was meant.

``url`` may carry the API prefix the Go client appended its relative paths to (``…/apps/v2``,
``…/api/v2``, ``…/v2``): our client sends absolute ``/apps/v2/…`` paths, so only the scheme, host and
port are kept. It must be ``http(s)://host[:port]``; the client then refuses plain http except to
loopback (the simulator).

Values are stripped of surrounding whitespace (``echo`` adds a newline). A value that is not UTF-8 or
holds control characters inside (two lines), or a token with a space inside (a pasted
``Authorization: Bearer …``), is refused before it can reach an HTTP header. Each problem gets an
error that names the file, never its content. Re-reading the directory and handing the result to
:meth:`VPSieClient.update_credentials` rotates credentials without a restart (a changed ``url`` needs
a restart: the client keeps the address it was built with).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

CLIENT_ID_FILE: Final = "clientId"
CLIENT_SECRET_FILE: Final = "clientSecret"  # noqa: S105 - a file name, not a secret
API_TOKEN_FILE: Final = "apiToken"  # noqa: S105 - a file name, not a secret
STOCK_TOKEN_FILE: Final = "token"  # noqa: S105 - the stock vpsie-secret's key, not a secret
URL_FILE: Final = "url"
CLUSTER_HINT_FILE: Final = "resourceIdentifier"
DATACENTER_HINT_FILE: Final = "datacenterId"
PROJECT_HINT_FILE: Final = "projectId"
API_PREFIXES: Final = ("/apps/v2", "/api/v2", "/v2")
"""Path suffixes a stock ``url`` may end with (the Go client's base); our paths carry them already."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CredentialsError(Exception):
    """The credentials directory cannot be used; the message says which file is wrong."""


@dataclass(frozen=True)
class SecretHints:
    """Identifiers the stock ``vpsie-secret`` may carry for discovery; not secrets."""

    cluster_identifier: str | None = None
    datacenter_id: str | None = None
    project_id: str | None = None


@dataclass(frozen=True)
class Credentials:
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    base_url: str | None = None
    """The Secret's ``url``, reduced to scheme://host[:port]; None when the Secret has none."""
    hints: SecretHints = SecretHints()
    ignored: tuple[str, ...] = ()
    """Files present but not used (``clientId``/``clientSecret`` beside the stock ``token``)."""


def _read(directory: Path, name: str, *, optional: bool = False, header: bool = False) -> str | None:
    path = directory / name
    if not path.exists():
        return None
    try:
        value = path.read_bytes().decode("utf-8").strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"{path} is not UTF-8 text") from None
    if not value:
        if optional:
            return None
        raise CredentialsError(f"{path} is empty")
    if _CONTROL.search(value) or (header and " " in value):
        what = "spaces or control characters" if header else "control characters"
        raise CredentialsError(f"{path} holds {what} inside its value (two lines, or a pasted header?)")
    return value


def normalize_base_url(value: str, *, source: str = URL_FILE) -> str:
    """``scheme://host[:port]`` of a VPSie API URL, dropping a trailing API prefix (``/apps/v2``...).

    Raises :class:`CredentialsError` naming ``source`` (never echoing the value: a URL may carry
    userinfo) when it is not an http(s) URL of the API root.
    """
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise CredentialsError(f"{source} is not a URL") from None
    if url.scheme not in ("https", "http") or not url.hostname:
        raise CredentialsError(f"{source} must be an https:// URL of the VPSie API")
    if url.username or url.password or url.query or url.fragment:
        raise CredentialsError(f"{source} must not carry credentials, a query or a fragment")
    path = url.path.rstrip("/")
    for prefix in API_PREFIXES:
        if path == prefix:
            path = ""
            break
    if path:
        raise CredentialsError(
            f"{source} must be the VPSie API root (like https://api.vpsie.com or https://api.vpsie.com/apps/v2)"
        )
    return f"{url.scheme}://{url.netloc}"


def read_credentials_dir(directory: str | Path) -> Credentials:
    """The credentials in ``directory`` (either layout; see the module docstring)."""
    base = Path(directory)
    if not base.is_dir():
        raise CredentialsError(f"VPSie credentials directory {base} does not exist")
    client_id = _read(base, CLIENT_ID_FILE)
    client_secret = _read(base, CLIENT_SECRET_FILE)
    api_token = _read(base, API_TOKEN_FILE, header=True)
    stock_token = _read(base, STOCK_TOKEN_FILE, header=True)
    url = _read(base, URL_FILE, optional=True)
    hints = SecretHints(
        cluster_identifier=_read(base, CLUSTER_HINT_FILE, optional=True),
        datacenter_id=_read(base, DATACENTER_HINT_FILE, optional=True),
        project_id=_read(base, PROJECT_HINT_FILE, optional=True),
    )
    base_url = normalize_base_url(url, source=str(base / URL_FILE)) if url else None
    if api_token and stock_token and api_token != stock_token:
        raise CredentialsError(f"{base} holds both {API_TOKEN_FILE} and {STOCK_TOKEN_FILE}; keep one")
    if api_token and (client_id or client_secret):
        raise CredentialsError(
            f"{base} holds both {API_TOKEN_FILE} and {CLIENT_ID_FILE}/{CLIENT_SECRET_FILE}; keep one kind"
        )
    token = api_token or stock_token
    if token:
        ignored = tuple(
            name
            for name, value in ((CLIENT_ID_FILE, client_id), (CLIENT_SECRET_FILE, client_secret))
            if value
        )
        return Credentials(api_token=token, base_url=base_url, hints=hints, ignored=ignored)
    if client_id and client_secret:
        return Credentials(client_id=client_id, client_secret=client_secret, base_url=base_url, hints=hints)
    if not (client_id or client_secret):
        raise CredentialsError(
            f"{base} has neither {API_TOKEN_FILE} (or {STOCK_TOKEN_FILE}) nor "
            f"{CLIENT_ID_FILE}/{CLIENT_SECRET_FILE}"
        )
    missing = CLIENT_SECRET_FILE if client_id else CLIENT_ID_FILE
    raise CredentialsError(f"{base} is missing {missing}")
