"""Listening sockets bound before anything else starts (``slotml api``, ``sim serve``, dashboard).

A server that binds late fails deep inside uvicorn or aiohttp with a traceback, after the world
or the store has been set up. Binding first turns a busy, privileged or impossible port, or a
host that is not ours, into one line (``UserError``: exit code 2) before any work is done.
"""

from __future__ import annotations

import errno
import socket

from slotml.errors import UserError


def bind_listener(host: str, port: int, what: str = "server") -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: the OS picks), non-blocking, ready to
    hand to uvicorn (``sockets=[...]``) or aiohttp (``SockSite``)."""
    if not 0 <= int(port) <= 65535:
        raise UserError(f"{what}: port {port} is not in 0..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(f"{what}: cannot resolve host {host!r} ({e})") from None
    family, _type, proto, _canon, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise UserError(f"{what}: cannot listen on {host}:{port} ({_why(e)})") from None
    return sock


def ensure_port_free(host: str, port: int, what: str = "server") -> None:
    """Fail early if ``host:port`` cannot be bound now (for servers started in a subprocess,
    e.g. Streamlit; the port could still be taken in between, which that server reports)."""
    bind_listener(host, port, what).close()


def _why(e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return "address already in use: another process listens there; pick another --port"
    if e.errno == errno.EACCES:
        return "permission denied: ports below 1024 need privileges"
    if e.errno == errno.EADDRNOTAVAIL:
        return "that address is not one of this machine's"
    return e.strerror or str(e)
