"""The sockets the registry listens on besides ``host:port``: systemd socket activation and Unix
sockets, as distribution's listener package offers them."""

from __future__ import annotations

import os
import socket
import stat

#: the first file descriptor systemd passes (sd_listen_fds)
SD_LISTEN_FDS_START = 3


def activated_socket() -> socket.socket | None:
    """The listening socket systemd passed this process (``LISTEN_PID``/``LISTEN_FDS``), if any.

    Like distribution, exactly one is expected; the variables are cleared so that forked
    workers and children do not take them for their own."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count == 0:
        return None
    if count != 1:
        raise OSError(f"found {count} socket-activation listeners, only expected 1")
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    sock.setblocking(False)
    return sock


def unix_socket(path: str, backlog: int = 1024) -> socket.socket:
    """A listening Unix socket at ``path``; a stale socket file there is replaced, any other
    file is an error (distribution's rule)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise OSError(f"file {path} exists and is not a socket")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
