"""``registry`` command line: ``serve`` (distribution-compatible), ``--version`` and operator tools."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import Config, ConfigError, load_config

log = logging.getLogger("registry")


#: sub-commands defined in their own packages: name -> ("module:function adding its parsers", help).
#: Only the invoked command's module is imported (registry.auth pulls aiohttp and cryptography: ~0.4 s
#: of every start); the others get a parser holding only their help, for ``registry --help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "auth": ("registry.auth.cli:add_auth_commands",
             "token auth tools: keys, users, test tokens, refresh tokens"),
    "garbage-collect": ("registry.lifecycle.commands:add_lifecycle_commands",
                        "delete blobs no manifest references (and, with -m, untagged manifests); safe beside "
                        "serving registries with --online"),
    "retention": ("registry.lifecycle.commands:add_lifecycle_commands",
                  "apply the retention rules: remove the tags and untagged manifests they select (their blobs "
                  "go at the next garbage collection)"),
    "repo": ("registry.lifecycle.commands:add_lifecycle_commands",
             "list repositories with their sizes, or delete one"),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; of the :data:`COMMANDS`, only the one ``argv`` names gets its full parser."""
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
    words = sys.argv[1:] if argv is None else argv
    invoked = next((w for w in words if not w.startswith("-")), None)
    wanted = COMMANDS[invoked][0] if invoked in COMMANDS else None
    for name, (adder, summary) in COMMANDS.items():
        if name in commands.choices:  # added with its group
            continue
        if adder == wanted:
            module, function = adder.split(":")
            getattr(importlib.import_module(module), function)(commands)
        else:
            commands.add_parser(name, help=summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
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
            _validate_tls(config)
            from . import provision

            steps = provision.plan(config)
            if args.command == "serve":
                provision.apply(steps)  # what distribution creates: the root, an htpasswd file
            from .auth import validate as _validate_auth

            if args.command == "serve" or not any(step.htpasswd for step in steps):
                _validate_auth(config)
        except (ConfigError, ValueError, OSError) as exc:
            print(f"registry: configuration error: {_one_line(exc)}", file=sys.stderr)
            return 1
        from .summary import summary_lines

        if args.command == "check-config":  # writes nothing
            for line in summary_lines(config, path):
                print(line)
            for step in steps:
                print(f"at start, serve will {step.what}")
            warnings = len(config.warnings)
            print(f"configuration OK ({warnings} warning{'s' if warnings != 1 else ''})" if warnings
                  else "configuration OK")
            return 0
        if args.command == "serve":
            for line in summary_lines(config, path):
                log.info("%s", line)
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


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, ConfigError) and exc.strerror:
        return f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror}"
    return " ".join(str(exc).split())


def _validate_tls(config: Config) -> None:
    """Load the certificate and key, client CAs and cipher list once, so a bad file fails here."""
    tls = config.http.tls
    if tls is None:
        return
    from .tls import server_context

    server_context(tls, with_certificate=tls.letsencrypt is None)
    if tls.letsencrypt is not None:
        from .tls.letsencrypt import check_cache_directory, require_client

        require_client()
        check_cache_directory(tls.letsencrypt.cachefile)


def _validate_storage(config: Config) -> None:
    """Open the driver once before serving so a bad storage block fails fast, with one line."""
    from drivers.base import StorageError

    from .storage import open_driver

    try:
        driver = open_driver(config)
    except StorageError as exc:
        raise ConfigError(str(exc)) from None
    asyncio.run(driver.close())


async def reindex(config: Config, repositories: Sequence[str]) -> int:
    """Rebuild the indexes of the named repositories (all when none), printing one line each."""
    from .storage import open_driver
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
    lockdir = None
    if workers > 1 and config.state.redis is None and not config.state.lockdirectory:
        import tempfile

        # the workers' leases (uploads, repositories) become flock files in one directory
        lockdir = config.state.lockdirectory = tempfile.mkdtemp(prefix="registry-locks-")
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
        import shutil

        if ROLE.metrics_dir is not None:
            shutil.rmtree(ROLE.metrics_dir, ignore_errors=True)
        if lockdir is not None:
            shutil.rmtree(lockdir, ignore_errors=True)
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
    from .server.connections import ConnectionGuard, connection_limits

    app = create_app(config)
    access_on = not config.log.accesslog_disabled
    limits = connection_limits(config.http)
    handler_args = dict(
        # a hook after each response for the access line (log.accesslog); none when it is off
        access_log=logging.getLogger(logs.ACCESS_LOGGER) if access_on else None,
        access_log_class=logs.access_log_class(),
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
    guard = ConnectionGuard(limits)
    certificates = _certificate_manager(config)
    ssl_context = certificates.context if certificates is not None else _ssl_context(config)
    site = _site(runner, config, ssl_context, reuse_port, guard=guard, handler_args=handler_args)
    await site.start()
    if certificates is not None:
        await certificates.start()
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
        if certificates is not None:
            await certificates.stop()
        if debug_runner is not None:
            await debug_runner.cleanup()
        await runner.cleanup()


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    """The listener's TLS (http.tls), None for plain HTTP."""
    from .tls import server_context

    return server_context(config.http.tls) if config.http.tls is not None else None


def _certificate_manager(config: Config) -> Any:
    """The ACME certificate manager when ``http.tls.letsencrypt`` is set, else None."""
    tls = config.http.tls
    if tls is None or tls.letsencrypt is None:
        return None
    from .tls.letsencrypt import CertificateManager

    return CertificateManager(tls)


def _site(runner: Any, config: Config, ssl_context: ssl.SSLContext | None, reuse_port: bool, **guarded: Any) -> Any:
    """Where to listen, as distribution: a socket systemd passed (socket activation), else
    ``http.net`` tcp (``http.addr`` host:port) or unix (``http.addr`` a socket path); every
    connection goes through the connection guard (registry.server.connections)."""
    from .listen import activated_socket, unix_socket
    from .server.connections import GuardedSite

    sock = activated_socket()
    if sock is not None:
        log.info("using the socket systemd passed (socket activation) instead of http.addr")
    elif config.http.net == "unix":
        sock = unix_socket(config.http.addr)
    host, port = config.http.host_port if sock is None else ("", 0)
    return GuardedSite(runner, host, port, sock=sock, ssl_context=ssl_context, reuse_port=reuse_port or None,
                       backlog=1024, **guarded)
