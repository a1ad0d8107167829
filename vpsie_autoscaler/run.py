"""``vpsie-autoscaler run``: settings → logging → manager (+ controllers) → run until SIGTERM.

Exit codes: 0 after a clean stop; 1 when leadership was lost (controller-runtime exits then, so
two leaders never act at once), when the manager failed, or when the API configuration is unusable;
2 for invalid settings (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import typing
from typing import TYPE_CHECKING

from pydantic import ValidationError
from pydantic_core import PydanticUndefined

from vpsie_autoscaler.config import (
    SECRET_FIELDS,
    Settings,
    env_name,
    flag_name,
    format_error,
    load_settings,
    unknown_environment,
)

if TYPE_CHECKING:
    from vpsie_autoscaler.kube import KubeClient

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _is_bool(annotation: object) -> bool:
    return annotation is bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting (secrets excepted); unset flags fall back to env, then defaults."""
    for name, field in Settings.model_fields.items():
        if name in SECRET_FIELDS:
            continue
        shown = "" if field.default in (None, PydanticUndefined) else f" (default {field.default!r})"
        help_text = f"{field.description or name}{shown}; env {env_name(name)}"
        if _is_bool(field.annotation):
            parser.add_argument(
                flag_name(name), dest=name, nargs="?", const="true", metavar="true|false",
                default=argparse.SUPPRESS, help=help_text,
            )  # fmt: skip
        else:
            choices = (
                typing.get_args(field.annotation)
                if typing.get_origin(field.annotation) is typing.Literal
                else None
            )
            parser.add_argument(
                flag_name(name), dest=name, default=argparse.SUPPRESS, help=help_text,
                metavar="|".join(choices) if choices else None,
            )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    try:
        settings = load_settings(overrides)
    except ValidationError as err:
        print(f"vpsie-autoscaler run: error: {format_error(err)}", file=sys.stderr)
        return EXIT_USAGE
    from vpsie_autoscaler.logging import configure  # noqa: PLC0415 - heavy imports only for `run`

    configure(settings.log_level, settings.log_format)
    warn_unknown_environment()
    if settings.sentry_dsn is not None:
        start_error_reporting(settings)
    try:
        return asyncio.run(serve(settings))
    except KeyboardInterrupt:  # pragma: no cover - SIGINT before the handlers were installed
        return EXIT_FAILED


def warn_unknown_environment() -> None:
    """A warning per ``VPSIE_AUTOSCALER_*`` variable no setting reads, naming the closest setting."""
    import structlog  # noqa: PLC0415

    log = structlog.get_logger("vpsie_autoscaler.run")
    for variable in unknown_environment():
        log.warning(
            variable.message,
            variable=variable.name,
            did_you_mean=env_name(variable.closest) if variable.closest else None,
        )


def start_error_reporting(settings: Settings) -> None:
    """Opt-in Sentry (:mod:`vpsie_autoscaler.observability.sentry`); the configured secrets, and those
    mounted at start, are scrubbed from every report by value too."""
    import structlog  # noqa: PLC0415

    from vpsie_autoscaler import __version__  # noqa: PLC0415
    from vpsie_autoscaler.observability.sentry import init_sentry  # noqa: PLC0415
    from vpsie_autoscaler.vpsie.credentials import CredentialsError, read_credentials_dir  # noqa: PLC0415

    assert settings.sentry_dsn is not None
    secrets = [s.get_secret_value() for s in (settings.vpsie_client_secret, settings.vpsie_api_token) if s]
    if settings.vpsie_credentials_dir:
        try:
            mounted = read_credentials_dir(settings.vpsie_credentials_dir)
        except CredentialsError:
            pass  # reported where the credentials are used
        else:
            secrets += [mounted.client_secret or "", mounted.api_token or ""]
    init_sentry(
        settings.sentry_dsn.get_secret_value(),
        version=__version__,
        environment=settings.sentry_environment,
        secrets=secrets,
    )
    structlog.get_logger("vpsie_autoscaler.run").info(
        "sentry.enabled", environment=settings.sentry_environment or "production"
    )


async def _tag_cluster(settings: Settings, client: KubeClient) -> None:
    """The cluster's identity (as in VM ownership tags) as the Sentry ``cluster`` tag."""
    from vpsie_autoscaler.controllers.cloud import ClusterIdentity  # noqa: PLC0415
    from vpsie_autoscaler.kube import errors  # noqa: PLC0415
    from vpsie_autoscaler.observability.sentry import set_cluster  # noqa: PLC0415

    try:
        cluster = await ClusterIdentity(client, settings.cluster_id).get()
    except errors.KubeError:
        cluster = "unknown"
    set_cluster(cluster)


async def serve(settings: Settings) -> int:
    """Build the manager from ``settings``, register the controllers and run it."""
    import structlog  # noqa: PLC0415

    from vpsie_autoscaler import __version__  # noqa: PLC0415
    from vpsie_autoscaler.controllers.setup import setup  # noqa: PLC0415
    from vpsie_autoscaler.kube import KubeClient, errors  # noqa: PLC0415
    from vpsie_autoscaler.runtime.leaderelection import LeaderElectionLost  # noqa: PLC0415
    from vpsie_autoscaler.runtime.manager import Manager, ManagerError, ManagerOptions  # noqa: PLC0415
    from vpsie_autoscaler.runtime.metrics import new_registry  # noqa: PLC0415

    log = structlog.get_logger("vpsie_autoscaler.run")
    log.info("starting", version=__version__, dry_run=settings.dry_run, namespace=settings.namespace,
             leader_elect=settings.leader_elect)  # fmt: skip
    registry = new_registry()
    try:
        client = await KubeClient.connect(settings.kubeconfig, registry=registry)
    except errors.KubeError as exc:
        log.error("cannot configure the Kubernetes client", error=str(exc))
        return EXIT_FAILED
    async with client:
        if settings.sentry_dsn is not None:
            await _tag_cluster(settings, client)
        options = ManagerOptions(
            namespace=settings.namespace,
            leader_elect=settings.leader_elect,
            leader_election_id=settings.leader_election_id,
            lease_duration=settings.lease_duration,
            renew_deadline=settings.renew_deadline,
            retry_period=settings.retry_period,
            metrics_bind_address=settings.metrics_bind_address,
            health_probe_bind_address=settings.health_probe_bind_address,
            graceful_shutdown_timeout=settings.graceful_shutdown_timeout,
        )
        manager = Manager(client, options, registry=registry)
        setup(manager, settings)
        try:
            await manager.run()
        except LeaderElectionLost:
            log.error("leader election lost")
            return EXIT_FAILED
        except (ManagerError, OSError) as exc:
            log.error("manager failed", error=str(exc))
            return EXIT_FAILED
    log.info("exited cleanly")
    return EXIT_OK
