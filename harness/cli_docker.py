"""`gymbox images ...` and `gymbox containers ...`: building environment images and managing containers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from gymbox.environments.api.registry import default_registry

console = Console()


def _docker() -> Any:
    import docker

    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise SystemExit(f"cannot reach the Docker engine ({exc}); start it (dockerd) and try again") from exc


def cmd_images_build(args: argparse.Namespace) -> int:
    from gymbox.environments.runtime.images import build_base, build_env_image, dockerfile

    client = _docker()
    registry = default_registry()
    envs = [registry.load(e) for e in args.envs] if args.envs else [registry.load(e) for e in registry.ids()]
    envs = [e for e in envs if dockerfile(e) is not None or args.envs]
    base = args.base or build_base(client, log=console.print)
    table = Table(title=f"environment images (base {base})")
    for column in ("environment", "image", "id", "built"):
        table.add_column(column)
    for env_cls in envs:
        record = build_env_image(client, env_cls, base=base, force=args.force, log=console.print)
        table.add_row(record.env, record.image, record.id[:19], "built" if record.built else "reused")
    console.print(table)
    return 0


def cmd_images_ls(args: argparse.Namespace) -> int:
    from gymbox.environments.runtime.images import repo_root

    path = repo_root() / "build" / "images.json"
    records = json.loads(path.read_text()) if path.exists() else {}
    table = Table(title=f"built images ({path})")
    for column in ("environment", "image", "id", "source hash", "base"):
        table.add_column(column)
    for env, record in sorted(records.items()):
        table.add_row(env, record["image"], record["id"][:19], record["source_hash"], record["base"])
    console.print(table)
    return 0


def cmd_containers_ls(args: argparse.Namespace) -> int:
    from gymbox.environments.runtime.containers import list_containers

    table = Table(title="gymbox containers")
    for column in ("name", "environment", "status", "owner", "expires in", "stale"):
        table.add_column(column)
    for info in list_containers(_docker()):
        alive = {True: "alive", False: "gone", None: "other host"}[info.owner_alive]
        table.add_row(info.name, info.env, info.status, f"{info.owner} ({alive})", f"{info.expires_in:.0f} s",
                      info.stale or "")
    console.print(table)
    return 0


def cmd_containers_prune(args: argparse.Namespace) -> int:
    from gymbox.environments.runtime.containers import reap

    removed = reap(_docker(), everything=args.all)
    for info, reason in removed:
        console.print(f"removed {info.name} ({info.env}): {reason}")
    console.print(f"{len(removed)} containers removed")
    return 0


def add_commands(sub: Any) -> None:
    images = sub.add_parser("images", help="build and list environment images").add_subparsers(
        dest="images_command", required=True)
    p = images.add_parser("build", help="build the images of container environments (all, or those named)")
    p.add_argument("envs", nargs="*", help="environment ids (default: every environment with a Dockerfile)")
    p.add_argument("--base", help="base image from a registry, e.g. python:3.11-slim (default: built with "
                                  "debootstrap from Debian packages)")
    p.add_argument("--force", action="store_true", help="rebuild even when the sources have not changed")
    p.set_defaults(handler=cmd_images_build)
    images.add_parser("ls", help="list built images and their digests").set_defaults(handler=cmd_images_ls)
    containers = sub.add_parser("containers", help="list or remove gymbox's containers").add_subparsers(
        dest="containers_command", required=True)
    containers.add_parser("ls", help="list containers with their owner and expiry").set_defaults(
        handler=cmd_containers_ls)
    p = containers.add_parser("prune", help="remove containers whose owner is gone or whose time has passed")
    p.add_argument("--all", action="store_true", help="remove every gymbox container, stale or not")
    p.set_defaults(handler=cmd_containers_prune)
