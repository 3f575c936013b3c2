"""The shape every operator's action command shares (`hyperlocal admin ...`, `hyperlocal
cluster`, `scale`, `cells ...`): a subcommand parses its arguments, a *build* turns them into one
control actor action and its arguments, and ``run_action`` sends it to the running deployment's
control actor (cluster/control.py), audited with a null actor (the operator on a machine of the
deployment), and prints the answer as JSON (an error: on stderr, exit 1; no deployment: exit 2).

The deployment is found by RAY_ADDRESS, else by the file `hyperlocal up` writes under
HL_DATA_DIR while it runs (cluster/runtime.py: ``deployment_file``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from cluster.config import Settings, load_settings
from cluster.runtime import deployment_file
from models.errors import AppError

Built = tuple[str, dict[str, Any]]
"""An action's name and its arguments, as the control actor's ``call`` takes them."""
Build = Callable[[argparse.Namespace], Built]
Arg = tuple[tuple[str, ...], dict[str, Any]]
"""One ``add_argument`` call: its names and its options."""


def arg(*names: str, **options: Any) -> Arg:
    """An argument of a command, as ``ArgumentParser.add_argument`` takes it."""
    return names, options


def fields(action: str, *names: str, **renamed: str) -> Build:
    """A build sending ``action`` with the parsed arguments ``names`` as they are and
    ``renamed`` under other keys (``actor_id="actor"``: the action's ``actor_id`` is
    ``--actor``)."""

    def build(a: argparse.Namespace) -> Built:
        args = {name: getattr(a, name) for name in names}
        args.update({key: getattr(a, name) for key, name in renamed.items()})
        return action, args

    return build


def command(sub: Any, name: str, help_text: str, build: Build, *args: Arg) -> Any:
    """Add the action command ``name`` (its ``args``) to the subparsers ``sub``; it runs
    ``build`` at the control actor. The parser, for subcommands of its own."""
    cmd = sub.add_parser(name, help=help_text)
    for names, options in args:
        cmd.add_argument(*names, **options)
    cmd.set_defaults(func=run_action, build=build)
    return cmd


def _join(settings: Settings) -> tuple[str, str, str] | None:
    """(ray address, namespace, actor name) of the running deployment, or None. From the
    deployment file, Ray's authentication mode too (a fresh shell has none set)."""
    if settings.ray_address:
        return settings.ray_address, settings.ray_namespace, settings.control_actor_name
    path = deployment_file(settings)
    if not path.exists():
        return None
    info = json.loads(path.read_text())
    mode = info.get("ray_auth_mode")
    if mode and "RAY_AUTH_MODE" not in os.environ:
        # Ray reads its authentication mode when it is imported (cluster.runtime imports it):
        # run again with the deployment's mode in the environment, as its own processes have.
        env = {**os.environ, "RAY_AUTH_MODE": str(mode)}
        os.execve(sys.executable, [sys.executable, "-m", "cluster.cli", *sys.argv[1:]], env)
    return str(info["ray_address"]), str(info["ray_namespace"]), str(info["control_actor_name"])


async def _call(
    name: str, namespace: str, timeout_s: float, action: str, args: dict[str, Any]
) -> dict[str, Any]:
    from services.control import RayControl

    return await RayControl(name, namespace, timeout_s).call(action, None, args)


def run_action(args: argparse.Namespace) -> int:
    """Run ``args.build(args)`` (an action and its arguments) at the control actor; print it."""
    import ray

    settings = load_settings()
    where = _join(settings)
    if where is None:
        print("no running deployment: start one (`make run`) or set RAY_ADDRESS", file=sys.stderr)
        return 2
    address, namespace, name = where
    action, call_args = args.build(args)
    ray.init(
        address=address, namespace=namespace, log_to_driver=False, logging_level=logging.WARNING
    )
    try:
        result = asyncio.run(
            _call(name, namespace, settings.control_call_timeout_s, action, call_args)
        )
    except AppError as err:
        print(json.dumps({"error": err.to_dict()}), file=sys.stderr)
        return 1
    finally:
        ray.shutdown()
    print(json.dumps(result, indent=2))
    return 0
