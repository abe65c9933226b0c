"""Which webhook URLs we will call: SSRF protection.

A webhook URL is chosen by a user and called by the server, from inside the operator's network.
So a URL is accepted only when it is http(s) and every address its host resolves to is public:
loopback, private (RFC 1918, ULA), link-local (169.254.169.254, the cloud metadata service, among
them), CGNAT, multicast, reserved and unspecified addresses are refused, as are IPv6 forms that
carry such an IPv4 address inside (IPv4-mapped, 6to4, NAT64). The operator may allow host names or
networks (`webhook_allowed_hosts`), e.g. an internal receiver or 127.0.0.1 in tests.

The check runs when the URL is given and again before every delivery, and the delivery connects to
exactly the addresses that passed (`Target.addresses`), so a DNS answer that changes in between
(DNS rebinding) cannot steer a request inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from batchin.errors import InvalidRequest

__all__ = ["IPAddress", "Resolver", "Target", "UrlPolicy", "system_resolver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses the host resolves to (raises OSError when it does not resolve)
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL_LENGTH = 2048
_RESOLVE_TIMEOUT_SECONDS = 5.0
_PARAM = "webhook_url"
_HOW_TO_ALLOW = "an operator can allow it with BATCHIN_WEBHOOK_ALLOWED_HOSTS"

# Not public, whatever the running Python's ipaddress tables say (they changed across 3.11 patches).
_REFUSED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), why)
    for cidr, why in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local NAT64"),
        ("100::/64", "discard-only"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


async def system_resolver(host: str, port: int) -> list[str]:
    """getaddrinfo in the loop's executor, so a slow DNS server never blocks the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: where to connect (every address passed the policy)."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


class UrlPolicy:
    def __init__(self, allowed: Iterable[str] = (), resolver: Resolver | None = None) -> None:
        self._allowed_hosts: set[str] = set()
        self._allowed_networks: list[IPNetwork] = []
        for entry in allowed:
            self._allow(entry)
        self._resolve = resolver or system_resolver

    def _allow(self, entry: str) -> None:
        text = entry.strip().lower().rstrip(".")
        try:
            self._allowed_networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
            return
        except ValueError:
            pass
        labels = text.split(".")
        if not text or not all(label and len(label) <= 63 for label in labels):
            raise ValueError(f"webhook_allowed_hosts: {entry!r} is neither a host name nor a network")
        self._allowed_hosts.add(text)

    async def check(self, url: str) -> Target:
        """The URL's target when every address it resolves to may be called; else InvalidRequest."""
        host, port = _parse(url)
        host_allowed = host in self._allowed_hosts
        literal = _ip_literal(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            addresses = await self._lookup(host, port)
        if not host_allowed:
            for address in addresses:
                why = self.refusal(ipaddress.ip_address(address))
                if why is not None:
                    shown = host if literal is not None else f"{host} resolves to {address}, which"
                    raise InvalidRequest(
                        f"webhook_url {shown} is a {why} address; webhooks are only sent to public "
                        f"addresses ({_HOW_TO_ALLOW}).",
                        param=_PARAM,
                    )
        return Target(url, host, port, tuple(addresses))

    async def _lookup(self, host: str, port: int) -> list[str]:
        try:
            async with asyncio.timeout(_RESOLVE_TIMEOUT_SECONDS):
                addresses = await self._resolve(host, port)
        except (OSError, TimeoutError, UnicodeError):
            addresses = []
        # A scope id (fe80::1%eth0) is not part of the address the policy judges.
        addresses = [a.split("%", 1)[0] for a in addresses]
        if not addresses:
            raise InvalidRequest(f"webhook_url host {host!r} does not resolve.", param=_PARAM)
        return addresses

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be called (e.g. "loopback"), or None when it may."""
        if any(address in network for network in self._allowed_networks):
            return None
        embedded = _embedded_ipv4(address)
        if embedded:  # an IPv6 form that reaches these IPv4 addresses: judged as they are
            return next((why for why in map(self.refusal, embedded) if why is not None), None)
        for network, why in _REFUSED_NETWORKS:
            if address.version == network.version and address in network:
                return why
        if address.is_multicast:
            return "multicast"
        if address.is_loopback:
            return "loopback"
        if address.is_link_local:
            return "link-local"
        if address.is_unspecified:
            return "unspecified"
        if address.is_reserved:
            return "reserved"
        if address.is_private or not address.is_global:
            return "private or special-purpose"
        return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (and is routed to): mapped, 6to4, Teredo, NAT64."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _parse(url: str) -> tuple[str, int]:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(
            f"webhook_url must be a URL of at most {MAX_URL_LENGTH} characters.", param=_PARAM
        )
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise InvalidRequest("webhook_url must not contain whitespace or control characters.", param=_PARAM)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"webhook_url is not a valid URL: {exc}.", param=_PARAM) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidRequest("webhook_url must be an http:// or https:// URL.", param=_PARAM)
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest("webhook_url must not contain credentials (user:password@).", param=_PARAM)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidRequest("webhook_url has no host.", param=_PARAM)
    if port is None:
        port = 443 if parts.scheme.lower() == "https" else 80
    if port == 0:
        raise InvalidRequest("webhook_url port must be between 1 and 65535.", param=_PARAM)
    return host.lower(), port


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    # Forms that inet_aton takes as IPv4 (2130706433, 0x7f.1, 127.1) reach 127.0.0.1 when handed to
    # the resolver, so judge them as the address they spell rather than as names.
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None
