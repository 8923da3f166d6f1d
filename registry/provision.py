"""What ``registry serve`` creates before it starts, as distribution does: a missing filesystem
root directory (with its parents) and a missing htpasswd file, holding a generated user
``docker`` whose password is printed once. ``check-config`` only says what would be created."""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from .config import Config

log = logging.getLogger("registry")

#: the user distribution provisions in a missing htpasswd file
DEFAULT_USER = "docker"


@dataclasses.dataclass
class Step:
    """One thing to create: ``what`` says it (for check-config and the log), ``run`` does it."""

    what: str
    run: Callable[[], None]
    #: the htpasswd file this step creates (auth checks wait for it)
    htpasswd: str | None = None


def plan(config: Config) -> list[Step]:
    """The steps this configuration needs; nothing is touched."""
    steps: list[Step] = []
    if config.storage.driver == "filesystem":
        root = filesystem_root(config)
        if not os.path.isdir(root):
            steps.append(Step(f"create the storage root directory {root}", lambda: _create_root(root)))
    htpasswd = config.auth.get("htpasswd") if isinstance(config.auth, dict) else None
    if isinstance(htpasswd, dict) and htpasswd.get("path") and not os.path.exists(str(htpasswd["path"])):
        path = str(htpasswd["path"])
        steps.append(Step(f"create the htpasswd file {path} with a user {DEFAULT_USER!r} and a generated password",
                          lambda: create_htpasswd(path), htpasswd=path))
    return steps


def apply(steps: list[Step]) -> None:
    for step in steps:
        step.run()


def filesystem_root(config: Config) -> str:
    from drivers.filesystem import DEFAULT_ROOT

    root = config.storage.params.get("rootdirectory") or DEFAULT_ROOT
    return os.path.abspath(str(root))


def _create_root(root: str) -> None:
    os.makedirs(root, exist_ok=True)
    log.warning("storage root directory %s did not exist: created it", root)


def create_htpasswd(path: str) -> str:
    """Create ``path`` (0600, parents 0700) with the user ``docker`` and a random password,
    printed once on stderr (never logged); returns the password."""
    from .auth.htpasswd import hash_password

    password = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    p = Path(path)
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"{DEFAULT_USER}:{hash_password(password)}\n")
    log.warning("htpasswd file %s did not exist: created it with the user %r (password printed once on stderr)",
                path, DEFAULT_USER)
    print(f"registry: htpasswd file {path} created with user {DEFAULT_USER!r} and password {password} "
          "(shown only now; change it with: registry auth add-user " + path + f" {DEFAULT_USER})",
          file=sys.stderr, flush=True)
    return password
