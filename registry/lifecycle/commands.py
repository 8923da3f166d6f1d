"""``registry garbage-collect``, ``registry retention`` and ``registry repo list|delete``.

``garbage-collect`` takes distribution's flags (``-d/--dry-run``, ``-m/--delete-untagged``,
``-q/--quiet``) and ours: ``--online``/``--offline`` and ``--grace DURATION`` (which implies
online). Without either, it runs online when a registry instance is serving the storage (its
heartbeat is fresh) and offline -- distribution's behaviour -- otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from drivers.base import StorageError

from ..config import Config, ConfigError, load_config
from ..errors import RegistryError
from ..reference import parse_name
from . import instances, progress, settings
from .collector import GCOptions, GCSummary, collect, human_bytes
from .lease import LeaseHeld
from .repos import delete_repository, list_usage
from .rules import parse_age

log = logging.getLogger("registry")


def add_lifecycle_commands(commands: Any) -> None:
    from ..cli import COMMANDS

    gc = commands.add_parser("garbage-collect", help=COMMANDS["garbage-collect"][1])
    _config_args(gc)
    gc.add_argument("--dry-run", "-d", action="store_true", help="list what would be deleted; change nothing")
    gc.add_argument("--delete-untagged", "-m", action="store_true",
                    help="also delete manifests that no tag reaches (an index keeps its children, a kept "
                    "manifest its referrers)")
    gc.add_argument("--quiet", "-q", action="store_true", help="no progress and no list; only the summary")
    mode = gc.add_mutually_exclusive_group()
    mode.add_argument("--online", action="store_true",
                      help="collect while registries serve the storage (grace window, claims, re-checks)")
    mode.add_argument("--offline", action="store_true",
                      help="the registries are stopped or read-only: everything unreferenced goes at once")
    gc.add_argument("--grace", metavar="DURATION",
                    help="online: keep what was written or used within DURATION (default: "
                    "storage.maintenance.gc.grace, 1h); implies --online")
    gc.add_argument("--no-retention", action="store_true", help="do not apply the retention rules")
    gc.add_argument("--json", action="store_true", help="print the summary as one JSON line at the end")
    gc.set_defaults(handler=_garbage_collect)

    ret = commands.add_parser("retention", help=COMMANDS["retention"][1])
    _config_args(ret)
    ret.add_argument("--dry-run", "-d", action="store_true", help="list what would be removed; change nothing")
    ret.add_argument("--quiet", "-q", action="store_true", help="only the summary")
    ret.add_argument("--json", action="store_true", help="print the summary as one JSON line at the end")
    ret.set_defaults(handler=_retention)

    repo = commands.add_parser("repo", help=COMMANDS["repo"][1])
    sub = repo.add_subparsers(dest="repo_command", metavar="REPO_COMMAND")
    repo.set_defaults(handler=lambda args: (repo.print_help(), 2)[1])
    ls = sub.add_parser("list", help="every repository: tags, manifests, layers, size")
    _config_args(ls, positional=False)
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ls.set_defaults(handler=_repo_list)
    rm = sub.add_parser("delete", help="remove every tag, manifest link and upload of repositories; "
                        "their blobs go at the next garbage collection")
    _config_args(rm, positional=False)
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.add_argument("--dry-run", "-d", action="store_true", help="say what would be removed")
    rm.add_argument("--force", action="store_true", help="delete even when immutable tags would go")
    rm.set_defaults(handler=_repo_delete)


def _config_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        p.add_argument("config_file", nargs="?", metavar="CONFIG", help="configuration file (config.yml)")
    p.add_argument("--config", "-c", dest="config_option", metavar="CONFIG", help="configuration file")


def _load(args: argparse.Namespace) -> tuple[Config, settings.LifecycleSettings]:
    given = getattr(args, "config_file", None)
    if given and args.config_option and given != args.config_option:
        raise ConfigError("give the configuration file once, either as an argument or with --config")
    path = args.config_option or given or os.environ.get("REGISTRY_CONFIGURATION_PATH")
    if path is None:
        raise ConfigError("no configuration file given (registry garbage-collect CONFIG, or --config)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
    config = load_config(path)
    return config, settings.from_config(config)


def _run(args: argparse.Namespace, body: Callable[[Config, settings.LifecycleSettings], Awaitable[int]]) -> int:
    try:
        config, lifecycle = _load(args)
    except (ConfigError, ValueError) as exc:
        print(f"registry: configuration error: {exc}", file=sys.stderr)
        return 1
    _few_cycle_collections()
    try:
        return asyncio.run(body(config, lifecycle))
    except LeaseHeld as exc:
        print(f"registry: {exc}; try again when it has finished (a crashed one expires within a minute)",
              file=sys.stderr)
        return 1
    except StorageError as exc:
        print(f"registry: storage error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("registry: interrupted; a rerun finishes the work", file=sys.stderr)
        return 130


def _few_cycle_collections() -> None:
    """A one-shot command makes a storage's worth of small, acyclic objects (names, digests, file
    records): with the default thresholds the cycle collector runs every 700 of them and walks
    every module object at each full pass (~0.1 s of a 1 s collection). Freeze what the imports
    made and collect far less often; cycles are still collected."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def _store(config: Config) -> Any:
    """The store as the serving instances see it: the same shared state (Redis: their leases and
    their descriptor cache, which deletes here must invalidate)."""
    from ..storage import open_driver
    from ..state import open_state
    from ..store import Store

    driver = open_driver(config)
    return Store(driver, secret=config.http.secret, events=_notifier(config, driver), state=open_state(config.state),
                 cache=bool(config.state.blobdescriptor))


async def _close(store: Any) -> None:
    try:
        await store.events.close()
        await store.state.close()
    finally:
        await store.driver.close()


def _notifier(config: Config, driver: Any) -> Any:
    """Events of what the command deletes (repositories, tags) go to the endpoints' outboxes in the
    storage, as a serving instance's do; the serving instances deliver them."""
    from ..events import build

    notifier, _ = build(config.notifications, driver, http_addr=config.http.addr,
                        url_for=lambda _request, path: path, metrics=False, deliver=False)
    return notifier


def _print_summary(summary: GCSummary, as_json: bool) -> None:
    for line in summary.lines():
        print(line)
    if as_json:
        print(json.dumps(summary.to_json(), sort_keys=True))


def _garbage_collect(args: argparse.Namespace) -> int:
    async def body(config: Config, lifecycle: settings.LifecycleSettings) -> int:
        store = _store(config)
        try:
            online = await _choose_online(store.driver, args)
            grace = parse_age(args.grace, "--grace") if args.grace is not None else lifecycle.gc.grace
            options = GCOptions(
                dry_run=args.dry_run, delete_untagged=args.delete_untagged, online=online, grace=grace,
                refresh=lifecycle.gc.refresh, lease_ttl=lifecycle.gc.leasettl,
                retention=None if args.no_retention or not lifecycle.retention.rules else lifecycle.retention,
                immutability=lifecycle.immutability,
            )  # fmt: skip
            summary = await collect(store, options, progress.for_terminal(args.quiet))
        finally:
            await _close(store)
        _print_summary(summary, args.json)
        return 0

    return _run(args, body)


async def _choose_online(driver: Any, args: argparse.Namespace) -> bool:
    if args.online or args.grace is not None:
        return True
    live = await instances.live_instances(driver)
    if args.offline:
        if live and not args.dry_run:
            print(f"registry: warning: {len(live)} registry instance(s) serve this storage "
                  f"({', '.join(live[:3])}); offline collection may delete layers their pushes use",
                  file=sys.stderr)
        return False
    if live:
        print(f"{len(live)} registry instance(s) serve this storage: collecting online "
              "(--offline to collect everything at once with the registries stopped)", file=sys.stderr)
        return True
    return False


def _retention(args: argparse.Namespace) -> int:
    async def body(config: Config, lifecycle: settings.LifecycleSettings) -> int:
        if not lifecycle.retention.rules:
            print("registry: no retention rules configured (retention.rules)", file=sys.stderr)
            return 1
        store = _store(config)
        try:
            online = bool(await instances.live_instances(store.driver))
            options = GCOptions(
                dry_run=args.dry_run, online=online, grace=lifecycle.gc.grace, refresh=lifecycle.gc.refresh, lease_ttl=lifecycle.gc.leasettl,
                retention=lifecycle.retention, immutability=lifecycle.immutability,
            )  # fmt: skip
            from .collector import Collector

            collector = Collector(store, options, progress.for_terminal(args.quiet))
            collector.sweep_blobs = False
            summary = await collector.run()
        finally:
            await _close(store)
        _print_summary(summary, args.json)
        return 0

    return _run(args, body)


def _repo_list(args: argparse.Namespace) -> int:
    async def body(config: Config, lifecycle: settings.LifecycleSettings) -> int:
        store = _store(config)
        try:
            repos, total = await list_usage(store.driver)
        finally:
            await _close(store)
        if args.json:
            print(json.dumps({"repositories": [r.__dict__ for r in repos], "total_bytes": total}))
            return 0
        width = max([len("REPOSITORY")] + [len(r.name) for r in repos])
        print(f"{'REPOSITORY':<{width}}  {'TAGS':>6}  {'MANIFESTS':>9}  {'LAYERS':>7}  {'SIZE':>10}")
        for r in repos:
            print(f"{r.name:<{width}}  {r.tags:>6}  {r.manifests:>9}  {r.layers:>7}  {human_bytes(r.size):>10}")
        print(f"{len(repos)} repositories; all blobs together (each counted once): {human_bytes(total)}")
        return 0

    return _run(args, body)


def _repo_delete(args: argparse.Namespace) -> int:
    async def body(config: Config, lifecycle: settings.LifecycleSettings) -> int:
        try:
            names = [parse_name(n) for n in args.names]
        except RegistryError as exc:
            print(f"registry: invalid repository name: {exc.detail}", file=sys.stderr)
            return 1
        store = _store(config)
        status = 0
        try:
            for name in names:
                try:
                    areas = await delete_repository(store, name, lifecycle.immutability,
                                                    force=args.force, dry_run=args.dry_run)
                except RegistryError as exc:
                    print(f"registry: {name}: {exc.message}", file=sys.stderr)
                    status = 1
                    continue
                if not args.dry_run and store.events.active:
                    await store.events.repository_deleted(name)
                verb = "would remove" if args.dry_run else "removed"
                print(f"{name}: {verb} {', '.join(a.rsplit('/', 1)[-1] for a in areas)}; its blobs go at the "
                      "next garbage collection")
        finally:
            await _close(store)
        return status

    return _run(args, body)
