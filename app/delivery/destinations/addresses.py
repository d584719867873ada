"""Where a destination may send: public addresses only, unless private ones are allowed.

A CRM's URL is the integrator's to choose and its DNS theirs to change. A destination that
resolved to this machine, a cloud's metadata service (169.254.169.254) or a private network
would have the workers POST signed customer batches inside, and keep what answered in dead
letters. So in production (`ALLOW_PRIVATE_DESTINATIONS` unset, outside the embedded mode) every
address a destination's host resolves to must be public: checked when connecting, before each
batch, and on each new connection's socket (see `public_http`).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from app.delivery.destinations.base import DestinationRefused, RetryableDeliveryError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: IPv4 inside IPv6
ALLOW_HINT = "set ALLOW_PRIVATE_DESTINATIONS=1 to allow destinations on private networks"
# getaddrinfo's "no such name" answers: a typo, not an outage (others may pass).
NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


class PrivateAddress(DestinationRefused, RetryableDeliveryError):
    """The destination's host is, or resolves to, an address it may not send to.

    Both kinds at once, because each caller needs its own: connecting refuses it (400, nothing
    saved: a DestinationRefused), while a sender pauses the destination with this reason, its
    records kept (a RetryableDeliveryError): DNS may point back, or a person fix the URL."""

    def __init__(self, reason: str) -> None:
        RetryableDeliveryError.__init__(self, reason)


class UnknownHost(DestinationRefused, RetryableDeliveryError):
    """The destination's host does not resolve at all (refused when connecting, a pause when
    sending: the name may come back)."""

    def __init__(self, reason: str) -> None:
        RetryableDeliveryError.__init__(self, reason)


def refusal(address: Address) -> str | None:
    """What kind of non-public address this is (None: a public one)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal(embedded)
    # Order matters: 127.0.0.1 is also "private", and the most specific name helps most.
    kinds = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        # Shared (100.64.0.0/10, carrier NAT) and the other special-purpose ranges.
        ("non-public", not address.is_global),
    )
    return next((kind for kind, matches in kinds if matches), None)


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, 6to4, NAT64): it is where the
    packets end up, so it is the one judged."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (an IP literal: itself); raises socket.gaierror."""
    found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(sockaddr[0]).split("%")[0]) for *_, sockaddr in found]


def check_address(address: Address, host: str) -> None:
    """Raise PrivateAddress when `address` (what `host` resolved to) is not public."""
    kind = refusal(address)
    if kind is None:
        return
    named = str(address) if host.strip("[]") == str(address) else f"{host} ({address})"
    raise PrivateAddress(f"destination {named} is a {kind} address: refused ({ALLOW_HINT})")


def check_host(host: str, port: int) -> None:
    """Raise PrivateAddress when any address `host` resolves to is not public (any: which one
    a connection gets is not ours to choose); socket.gaierror when it does not resolve."""
    for address in resolve(host, port):
        check_address(address, host)


def check_url(url: str) -> None:
    """`check_host` for a destination URL, with resolution failures as the sender and the
    connect path take them: a name that does not exist is UnknownHost, a resolver that does
    not answer is a RetryableDeliveryError (503 when connecting, a pause when sending)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        check_host(host, port)
    except socket.gaierror as exc:
        if exc.errno in NO_SUCH_NAME:
            raise UnknownHost(f"destination host {host} does not resolve") from None
        raise RetryableDeliveryError(f"could not resolve {host}: {exc.strerror}") from None
