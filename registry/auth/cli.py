"""``registry auth ...``: operator tools for token auth.

create-key   a signing key and a self-signed certificate (the registry's ``rootcertbundle``)
add-user     add or change a user in an htpasswd file (bcrypt)
token        print a token for an account, granted by the configured rules (for testing)
jwks         print the JWKS of the token server's key (for ``auth.token.jwks``)
revoke       revoke refresh tokens (one, an account's, or all)
serve-token  run the token server alone
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..config import ConfigError, Section, load_config
from . import acl, keys
from .config import TokenServerConfig
from .htpasswd import HtpasswdError, set_user
from .scope import ScopeError, format_scopes, parse_scopes


def add_auth_commands(subparsers: Any) -> None:
    """Register ``auth`` and its sub-commands on the main CLI's sub-parsers."""
    from ..cli import COMMANDS

    auth = subparsers.add_parser("auth", help=COMMANDS["auth"][1])
    cmds = auth.add_subparsers(dest="auth_command", metavar="AUTH_COMMAND")
    auth.set_defaults(handler=lambda args: (auth.print_help(), 2)[1])

    p = cmds.add_parser("create-key", help="create a token signing key and a self-signed certificate")
    p.add_argument("--key", required=True, help="where to write the private key (PEM, mode 0600)")
    p.add_argument("--cert", required=True, help="where to write the certificate (PEM): the registry's rootcertbundle")
    p.add_argument("--type", choices=("ec", "rsa", "ed25519"), default="ec", help="key type (default: ec P-256)")
    p.add_argument("--cn", default="registry-token-signer", help="certificate common name")
    p.add_argument("--days", type=int, default=3650, help="certificate validity in days (default 3650)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(handler=_create_key)

    p = cmds.add_parser("add-user", help="add or update a user in an htpasswd file (bcrypt)")
    p.add_argument("htpasswd", help="the htpasswd file (created if missing)")
    p.add_argument("user")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--cost", type=int, default=12, help="bcrypt cost (default 12)")
    p.set_defaults(handler=_add_user)

    p = cmds.add_parser("token", help="print a token signed by the token server's key (for tests)")
    _config_arg(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--account", help="the account the token is for")
    who.add_argument("--anonymous", action="store_true", help="a token for an anonymous caller")
    p.add_argument("--scope", action="append", default=[], help="scope to ask for, e.g. repository:foo:pull (repeat)")
    p.add_argument("--service", help="the service (default: the first configured)")
    p.add_argument("--json", action="store_true", help="print the token response as JSON with the granted scope")
    p.set_defaults(handler=_token)

    p = cmds.add_parser("jwks", help="print the JWKS of the token server's signing key")
    _config_arg(p)
    p.set_defaults(handler=_jwks)

    p = cmds.add_parser("revoke", help="revoke refresh tokens")
    _config_arg(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--account", help="revoke every refresh token of this account")
    what.add_argument("--token-stdin", action="store_true", help="revoke the refresh token read from stdin")
    p.set_defaults(handler=_revoke)

    p = cmds.add_parser("serve-token", help="run the token server on its own")
    _config_arg(p)
    p.add_argument("--addr", default="127.0.0.1:5001", help="listen address (default 127.0.0.1:5001)")
    p.set_defaults(handler=_serve)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, help="registry configuration file with a tokenserver: block")


def _fail(message: str) -> int:
    print(f"registry auth: {message}", file=sys.stderr)
    return 1


def _server_config(path: str) -> TokenServerConfig:
    config = load_config(path)
    server = TokenServerConfig.from_section(Section(config.tokenserver, "tokenserver"))  # keys checked at load
    if server is None:
        raise ConfigError(f"{path} has no tokenserver: block")
    return server


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _create_key(args: argparse.Namespace) -> int:
    key_path, cert_path = Path(args.key), Path(args.cert)
    for p in (key_path, cert_path):
        if p.exists() and not args.force:
            return _fail(f"{p} exists (use --force to overwrite)")
    if args.days < 1:
        return _fail("--days must be at least 1")
    key = keys.generate_private_key(args.type)
    cert = keys.make_certificate(key, args.cn, days=args.days)
    _write_private(key_path, keys.private_key_pem(key))
    cert_path.write_bytes(keys.certificate_pem(cert))
    print(f"wrote {key_path} ({args.type}, {keys.signing_algorithm(key)}) and {cert_path}")
    print(f"key id (RFC 7638 thumbprint): {keys.thumbprint(key.public_key())}")  # type: ignore[arg-type]
    return 0


def _add_user(args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            return _fail("passwords differ")
    if not 4 <= args.cost <= 16:
        return _fail("--cost must be between 4 and 16")
    try:
        new = set_user(args.htpasswd, args.user, password, rounds=args.cost)
    except HtpasswdError as exc:
        return _fail(str(exc))
    print(f"{'added' if new else 'updated'} user {args.user} in {args.htpasswd}")
    return 0


def _token(args: argparse.Namespace) -> int:
    from .tokenserver import TokenSigner, _rfc3339

    try:
        server = _server_config(args.config)
        signer = TokenSigner.from_config(server)
        asked = parse_scopes(args.scope)
    except (ConfigError, keys.UnusableKey, ScopeError) as exc:
        return _fail(str(exc))
    service = args.service or server.services[0]
    if service not in server.services:
        return _fail(f"unknown service {service!r} (configured: {', '.join(server.services)})")
    account = None if args.anonymous else args.account
    granted = acl.grant(server.rules, account, asked)
    token, issued = signer.sign(account or "", service, granted)
    if args.json:
        print(json.dumps({"token": token, "access_token": token, "expires_in": signer.lifetime,
                          "issued_at": _rfc3339(issued), "scope": format_scopes(granted)}, indent=2))
    else:
        print(token)
        if format_scopes(granted) != format_scopes(asked):
            print(f"note: granted {format_scopes(granted) or 'nothing'} of {format_scopes(asked)}", file=sys.stderr)
    return 0


def _jwks(args: argparse.Namespace) -> int:
    from .tokenserver import TokenSigner

    try:
        signer = TokenSigner.from_config(_server_config(args.config))
    except (ConfigError, keys.UnusableKey) as exc:
        return _fail(str(exc))
    print(json.dumps(signer.jwks(), indent=2))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from .refresh import RefreshStore, RefreshStoreError

    try:
        server = _server_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    if not server.refreshtokens_path:
        return _fail("tokenserver.refreshtokens.path is not configured: there are no refresh tokens")
    state_config = load_config(args.config).state
    if state_config.redis is not None:  # the tokens live in Redis, shared by every instance
        return _revoke_shared(args, state_config, server.refreshtokens_expiration)
    try:
        store = RefreshStore(server.refreshtokens_path, server.refreshtokens_expiration)
        if args.token_stdin:
            count = store.revoke(token=sys.stdin.readline().strip())
        else:
            count = store.revoke(account=args.account)
    except (RefreshStoreError, OSError) as exc:
        return _fail(str(exc))
    print(f"revoked {count} refresh token(s)")
    return 0


def _revoke_shared(args: argparse.Namespace, state_config: Any, lifetime: float) -> int:
    import asyncio

    from ..state import StateUnavailable, open_state
    from .refresh import SharedRefreshStore

    token = sys.stdin.readline().strip() if args.token_stdin else None

    async def revoke() -> int:
        state = open_state(state_config)
        try:
            store = SharedRefreshStore(state, lifetime)
            return await (store.revoke(token=token) if token is not None else store.revoke(account=args.account))
        finally:
            await state.close()

    try:
        count = asyncio.run(revoke())
    except StateUnavailable as exc:
        return _fail(f"the refresh tokens are in Redis, which is unavailable: {exc}")
    print(f"revoked {count} refresh token(s)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .tokenserver import token_app

    try:
        server = _server_config(args.config)
        app = token_app(server)
    except (ConfigError, keys.UnusableKey, HtpasswdError) as exc:
        return _fail(str(exc))
    host, _, port = args.addr.rpartition(":")
    if not port.isdigit():
        return _fail(f"--addr: expected host:port, got {args.addr!r}")
    import asyncio

    from ..cli import _setup_logging
    from ..server.connections import ConnectionLimits, serve_app

    _setup_logging("info")  # with the credential filter: this server sees passwords
    asyncio.run(serve_app(app, host or "127.0.0.1", int(port), ConnectionLimits()))
    return 0
