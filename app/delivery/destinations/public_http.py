"""An HTTP session that connects only to public addresses, for destinations in production.

Checking a destination's host before a request is not enough on its own: its DNS may answer a
public address to the check and a private one to the connection a moment later (DNS
rebinding). Each new connection of this session checks the host's addresses itself, just
before connecting, and then the address the socket actually reached, before a byte is sent.
Connections through a proxy reach the proxy, not the host: for those the senders' own check
before each batch is what applies.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import threading

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from app.delivery.destinations import addresses
from app.delivery.destinations.base import DestinationContext

_sessions: dict[int, requests.Session] = {}  # per process: a forked child must not share sockets
_sessions_lock = threading.Lock()


def enforced(context: DestinationContext) -> bool:
    """Whether the destination must be on public addresses: in production, unless
    ALLOW_PRIVATE_DESTINATIONS. The sender and the connect path always pass their settings; a
    context without them is a test or tool driving a destination directly, on its own machine."""
    return context.settings is not None and not context.settings.private_destinations_allowed


def confined(context: DestinationContext) -> DestinationContext:
    """The context a destination is built with: in production, with a session that connects
    only to public addresses instead of the process's own."""
    if not enforced(context):
        return context
    return dataclasses.replace(context, http=public_only_session())


def public_only_session() -> requests.Session:
    """This process's session whose connections refuse non-public peers (PrivateAddress)."""
    with _sessions_lock:
        session = _sessions.get(os.getpid())
        if session is None:
            session = requests.Session()
            adapter = _PublicOnlyAdapter()
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[os.getpid()] = session
        return session


def _checked(connect: socket.socket, host: str) -> socket.socket:
    """The socket, if the address it reached is public; else closed, and PrivateAddress."""
    try:
        peer = ipaddress.ip_address(str(connect.getpeername()[0]).split("%")[0])
        addresses.check_address(peer, host)
    except BaseException:
        connect.close()
        raise
    return connect


class _PublicOnlyHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        addresses.check_host(self.host, self.port)  # no connection at all to a private host
        return _checked(super()._new_conn(), self.host)


class _PublicOnlyHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        addresses.check_host(self.host, self.port)
        return _checked(super()._new_conn(), self.host)


class _PublicOnlyHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicOnlyHTTPConnection


class _PublicOnlyHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicOnlyHTTPSConnection


class _PublicOnlyAdapter(HTTPAdapter):
    """requests' adapter, its pools making connections that check their peer."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: object
    ) -> None:
        """requests' pool manager, with our pool classes (the manager's own to override)."""
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PublicOnlyHTTPPool,
            "https": _PublicOnlyHTTPSPool,
        }
