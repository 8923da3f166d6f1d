"""``registry`` command line: ``serve`` (distribution-compatible), ``--version`` and operator tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence

from . import __version__
from .config import Config, ConfigError, load_config

log = logging.getLogger("registry")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registry", description="An OCI distribution registry (spec v1.1) with Docker compatibility."
    )
    parser.add_argument("--version", "-v", action="version", version=f"registry {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the registry (like distribution's `registry serve config.yml`)")
    serve.add_argument("config_file", nargs="?", help="configuration file (distribution's config.yml format)")
    serve.add_argument("--config", "-c", dest="config_option", help="configuration file")
    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("config_file", nargs="?")
    check.add_argument("--config", "-c", dest="config_option")
    reindex = commands.add_parser(
        "reindex",
        help="rebuild our tag and referrers indexes from the stored manifests "
        "(after the reference registry wrote to the same storage)",
    )
    reindex.add_argument("--config", "-c", dest="config_option", help="configuration file")
    reindex.add_argument("repositories", nargs="*", metavar="REPOSITORY", help="default: every repository")
    reindex.set_defaults(config_file=None)
    from .auth.cli import add_auth_commands

    add_auth_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in ("serve", "check-config", "reindex"):
        if args.config_file and args.config_option and args.config_file != args.config_option:
            parser.error("give the configuration file once, either as an argument or with --config")
        path = args.config_option or args.config_file or os.environ.get("REGISTRY_CONFIGURATION_PATH")
        try:
            _setup_logging("info")
            config = load_config(path)
            _setup_logging(config.log.level, config.log.formatter, config.log.fields)
            _validate_storage(config)
            from .auth import validate as _validate_auth

            _validate_auth(config)
        except (ConfigError, ValueError) as exc:
            print(f"registry: configuration error: {exc}", file=sys.stderr)
            return 1
        if args.command == "check-config":
            print("configuration OK")
            return 0
        if args.command == "reindex":
            return asyncio.run(reindex(config, args.repositories))
        return serve(config)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args) or 0)


def _setup_logging(level: str, formatter: str = "text", fields: dict | None = None) -> None:
    from .observe import logs, redact

    logs.configure(level, formatter, fields)
    redact.install()  # no credential in any log line, from any logger (aiohttp's included)


def _validate_storage(config: Config) -> None:
    """Open the driver once before serving so a bad storage block fails fast, with one line."""
    from drivers.base import StorageError

    from .app import open_driver

    try:
        driver = open_driver(config)
    except StorageError as exc:
        raise ConfigError(str(exc)) from None
    asyncio.run(driver.close())


async def reindex(config: Config, repositories: Sequence[str]) -> int:
    """Rebuild the indexes of the named repositories (all when none), printing one line each."""
    from .app import open_driver
    from .errors import RegistryError
    from .reference import parse_name
    from .store import Store

    try:
        names = [parse_name(r) for r in repositories]
    except RegistryError as exc:
        print(f"registry: invalid repository name: {exc.detail}", file=sys.stderr)
        return 1
    driver = open_driver(config)
    try:
        store = Store(driver, secret=config.http.secret)
        if not names:  # every repository the walk finds; the catalog index made equal to it
            names = await store.catalog.rebuild()
            print(f"catalog index: {len(names)} repositories")
        for name in names:
            counts = await store.rebuild_indexes(name)
            print(f"{name}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    finally:
        await driver.close()
    return 0


def serve(config: Config) -> int:
    """Run until SIGINT/SIGTERM. With ``http.workers > 1`` forks workers sharing the port."""
    if config.http.secret_generated:
        log.warning("http.secret is not set: generated a random one; set it when running several instances")
    from .server.connections import raise_fd_limit

    raise_fd_limit()  # before forking: every worker inherits it
    workers = config.http.workers
    children: list[int] = []
    from .observe import tracing
    from .observe.metrics import snapshot_dir_for
    from .observe.process import ROLE

    if config.http.debug.prometheus_enabled:
        ROLE.metrics_dir = snapshot_dir_for(workers)
    if workers > 1:
        for _ in range(workers - 1):
            pid = os.fork()
            if pid == 0:
                ROLE.primary = False
                try:
                    tracing.setup(__version__)
                    _run_loop(config, reuse_port=True)
                finally:
                    tracing.shutdown()
                    os._exit(0)
            children.append(pid)
    tracing.setup(__version__)
    try:
        _run_loop(config, reuse_port=workers > 1)
    except OSError as exc:
        print(f"registry: cannot listen on {config.http.addr}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        tracing.shutdown()
        if ROLE.metrics_dir is not None:
            import shutil

            shutil.rmtree(ROLE.metrics_dir, ignore_errors=True)
    return 0


def _run_loop(config: Config, *, reuse_port: bool) -> None:
    """Run the server on uvloop when it is installed (faster I/O; with zero-copy sendfile, see
    :mod:`registry.eventloop`), else on asyncio's loop."""
    from .eventloop import new_event_loop, uvloop_available

    if uvloop_available() and not os.environ.get("REGISTRY_NO_UVLOOP"):
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(_run(config, reuse_port=reuse_port))
    else:
        asyncio.run(_run(config, reuse_port=reuse_port))


async def _run(config: Config, *, reuse_port: bool) -> None:
    from aiohttp import web

    from . import eventloop
    from .app import create_app
    from .observe import logs
    from .observe.process import ROLE
    from .observe.setup import HEALTH_KEY, debug_app
    from .server.connections import ConnectionGuard, GuardedSite, connection_limits

    app = create_app(config)
    metrics_on = config.http.debug.prometheus_enabled
    access_on = not config.log.accesslog_disabled
    limits = connection_limits(config.http)
    handler_args = dict(
        # one hook after each response: the access line (log.accesslog) and the HTTP metrics
        access_log=logging.getLogger(logs.ACCESS_LOGGER) if (access_on or metrics_on) else None,
        access_log_class=logs.access_log_class(metrics=metrics_on, access_log=access_on),
        # bytes aiohttp buffers per request body before pausing the socket: 64 KiB (its default)
        # made a push pause/resume every few pieces (measured: 20% less CPU per MB pushed at 1 MiB)
        read_bufsize=1 << 20,
        keepalive_timeout=limits.idle,
    )
    runner = web.AppRunner(
        app,
        handle_signals=False,
        # on SIGTERM, in-flight requests get http.draintimeout to finish (unset: 60 s)
        shutdown_timeout=config.http.draintimeout or 60.0,
        **handler_args,
    )
    await runner.setup()
    eventloop.STALL_TIMEOUT = limits.body or eventloop.STALL_TIMEOUT  # a client not reading a sendfile
    host, port = config.http.host_port
    guard = ConnectionGuard(limits)
    site = GuardedSite(runner, host, port, guard=guard, handler_args=handler_args, ssl_context=_ssl_context(config),
                       reuse_port=reuse_port or None, backlog=1024)
    await site.start()
    debug_runner = None
    if ROLE.primary and config.http.debug.addr:
        debug_runner = web.AppRunner(debug_app(config, app[HEALTH_KEY]), access_log=None, handle_signals=False)
        await debug_runner.setup()
        debug_host, debug_port = config.http.debug.host_port
        await web.TCPSite(debug_runner, debug_host, debug_port).start()
        log.info("debug server listening on %s", config.http.debug.addr)
    log.info("registry %s listening on %s (at most %d connections%s)", __version__, config.http.addr,
             guard.max_connections, " per worker" if config.http.workers > 1 else "")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if debug_runner is not None:
            await debug_runner.cleanup()
        await runner.cleanup()


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    tls = config.http.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.certificate, tls.key)
    if tls.clientcas:
        for ca in tls.clientcas:
            ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
