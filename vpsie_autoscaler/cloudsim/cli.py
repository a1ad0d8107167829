"""``vpsie-autoscaler cloudsim``: run the VPSie simulator in the foreground until SIGINT/SIGTERM.

Options are defined in :mod:`.options`; credentials not given by flag or config are generated and
printed, together with the base URL and the admin endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import sys
from typing import Any

import yaml
from aiohttp import web
from pydantic import ValidationError

from vpsie_autoscaler.cloudsim.app import ADMIN_PREFIX, Simulator
from vpsie_autoscaler.cloudsim.config import ConfigError, SimConfig, load_config
from vpsie_autoscaler.cloudsim.faults import FaultSpec
from vpsie_autoscaler.runtime.clock import RealClock

GENERATED_SECRET_BYTES = 16
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def build_config(args: argparse.Namespace) -> SimConfig:
    config = load_config(args.config)
    updates: dict[str, Any] = {}
    if args.client_id:
        updates["client_id"] = args.client_id
    if args.client_secret:
        updates["client_secret"] = args.client_secret
    if not (updates.get("client_id") or config.client_id):
        updates["client_id"] = f"sim-{secrets.token_hex(8)}"
    if not (updates.get("client_secret") or config.client_secret):
        updates["client_secret"] = secrets.token_urlsafe(GENERATED_SECRET_BYTES)
    tokens = list(config.api_tokens) + list(args.api_token)
    updates["api_tokens"] = tokens or [secrets.token_urlsafe(GENERATED_SECRET_BYTES)]
    delays = config.delays.model_copy(
        update={
            k: v
            for k, v in (
                ("boot_seconds", args.boot_delay),
                ("pending_seconds", args.pending_delay),
                ("delete_seconds", args.delete_delay),
            )
            if v is not None
        }
    )
    updates["delays"] = delays
    if args.mode:
        updates["mode"] = args.mode
    if getattr(args, "login_body", None):
        updates["login_body"] = args.login_body
    if args.token_ttl is not None:
        updates["token_ttl_seconds"] = args.token_ttl
    extra_faults = [parse_fault(text) for text in getattr(args, "fault", None) or []]
    if extra_faults:
        updates["faults"] = [*config.faults, *extra_faults]
    return SimConfig.model_validate(config.model_dump() | updates)


def parse_fault(text: str) -> FaultSpec:
    """A ``--fault`` value: a fault spec as JSON or a YAML flow mapping (``{kind: late_reply}``)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--fault {text!r} is not valid JSON or YAML: {exc}") from None
    try:
        return FaultSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"--fault {text!r}: {exc}") from None


async def serve(args: argparse.Namespace, config: SimConfig) -> None:
    clock = RealClock()
    sim = Simulator(config, clock=clock, seed=args.seed, state_file=args.state_file)
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://{args.host}:{port}"
    info = {
        "base_url": base,
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "api_token": config.api_tokens[0],
    }
    print(f"VPSie simulator listening on {base} (mode {config.mode})")
    print(f"  client id:      {config.client_id}")
    print(f"  client secret:  {config.client_secret}")
    print(f"  api token:      {config.api_tokens[0]}")
    print(f"  admin:          {base}{ADMIN_PREFIX}/state")
    if args.host not in LOOPBACK_HOSTS:
        print(f"  warning: the admin endpoints need no auth and {args.host} is not a loopback address")
    sys.stdout.flush()
    if args.ready_file:
        args.ready_file.write_text(json.dumps(info))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if args.kubeconfig:
                from vpsie_autoscaler.cloudsim.kube_nodes import connect_bridge  # noqa: PLC0415 - optional part

                bridge = await stack.enter_async_context(
                    connect_bridge(sim.state, str(args.kubeconfig), clock)
                )
                task = asyncio.create_task(bridge.run(), name="cloudsim-bridge")
                stack.callback(task.cancel)
                print(f"  bridge:         Nodes in the cluster of {args.kubeconfig}")
                sys.stdout.flush()
            await stop.wait()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"cloudsim: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args, config))
    except (OSError, ValueError) as exc:
        print(f"cloudsim: {exc}", file=sys.stderr)
        return 1
    return 0
