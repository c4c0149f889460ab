"""Which network addresses an image download may connect to (pure policy, no I/O).

Image URLs come from a public upload pipeline, so a URL is attacker-controlled
input: without this policy the scorer could be pointed at the company's own
network (SSRF), at cloud metadata endpoints (credentials), or at itself.

Policy: an address is allowed only if it is globally routable unicast and not a
known cloud-metadata endpoint. Everything else (private, loopback, link-local,
multicast, reserved, unspecified, CGNAT 100.64/10, documentation ranges, ...) is
refused unless it lies inside an operator-supplied allow-list
(``Settings.download_allow_networks``, e.g. ``127.0.0.0/8`` for tests).

IPv6 addresses that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``,
NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by the IPv4 address they
reach, so ``::ffff:127.0.0.1`` is loopback, not "some IPv6 address".

The downloader applies :func:`check_address` to every address the DNS resolver
returns and again to the socket address it actually connects to.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance-metadata endpoints. Most sit in ranges refused anyway
# (169.254/16 link-local, fd00::/8 ULA, 100.64/10 CGNAT); 192.0.0.192 (Oracle)
# and 168.63.129.16 (Azure WireServer) are *globally routable* by ipaddress'
# tables, so they must be listed. Metadata addresses stay refused even when a
# broader allow-list range covers them: only naming the exact address
# (a /32 or /128 entry) allows one.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync (link-local anyway)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS DNS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure WireServer
    )
)

# RFC 6598 shared address space; ipaddress marks it non-global but neither
# private nor reserved, so name it explicitly for a readable reason.
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052


@dataclass(frozen=True)
class AddressCheck:
    """The outcome of checking one address: ``allowed`` or the category that refused it."""

    address: IPAddress
    allowed: bool
    category: str  # "allowed", "allow_listed", "loopback", "private", "link_local", ...

    def __bool__(self) -> bool:
        return self.allowed


class BlockedAddressError(OSError):
    """A connection to a refused address was attempted.

    An ``OSError`` on purpose: aiohttp wraps OSErrors raised by resolvers and
    socket factories into its connector errors and keeps them as the cause, so
    the downloader can recognise the refusal and report ``blocked_address``.
    """

    def __init__(self, verdict: AddressCheck, host: str | None = None) -> None:
        self.verdict = verdict
        self.host = host
        where = f"{host} -> {verdict.address}" if host and host != str(verdict.address) else str(verdict.address)
        super().__init__(f"address {where} is refused ({verdict.category})")


def parse_allow_networks(spec: str | Iterable[str] | None) -> tuple[IPNetwork, ...]:
    """Parse ``"127.0.0.0/8, ::1/128"`` (or a list of such strings) into networks.

    Raises ``ValueError`` on a malformed entry: a typo in a security setting
    must stop the service at start-up, not silently allow or deny.
    """
    if spec is None:
        return ()
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    networks: list[IPNetwork] = []
    for raw in parts:
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"download_allow_networks: {entry!r} is not a CIDR network ({exc})") from exc
    return tuple(networks)


def parse_ip(value: str | IPAddress) -> IPAddress:
    """An ``ipaddress`` object from a textual address; accepts brackets and IPv6 zones (``fe80::1%eth0``)."""
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text and "%" in text:
        text = text.split("%", 1)[0]  # the zone (fe80::1%eth0) does not change which address it is
    return ipaddress.ip_address(text)


def legacy_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a legacy numeric host form denotes, else None.

    ``inet_aton`` (which getaddrinfo and browsers use) accepts decimal
    ``2130706433``, octal ``0177.0.0.1``, hex ``0x7f.1`` and short ``127.1``
    forms that ``ipaddress`` rejects; all of them mean 127.0.0.1. The downloader
    judges such hosts by the address they reach.
    """
    if not host or not all(c in "0123456789abcdefxABCDEFX." for c in host):
        return None
    if not any(c.isdigit() for c in host):
        return None  # e.g. the host name "face.bad" is a DNS name
    try:
        packed = socket.inet_aton(host)
    except OSError:
        return None
    return ipaddress.IPv4Address(packed)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def _refusal_category(address: IPAddress) -> str | None:
    """Why ``address`` itself is not a public unicast destination, or None if it is."""
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        return "cgnat"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site_local"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not_global"
    return None


def _allow_listed(address: IPAddress, allow: Sequence[IPNetwork]) -> bool:
    for net in allow:
        if net.version != address.version or address not in net:
            continue
        if address in METADATA_ADDRESSES and net.num_addresses != 1:
            continue  # a broad range never opens a metadata endpoint
        return True
    return False


def check_address(value: str | IPAddress, allow: Sequence[IPNetwork] = ()) -> AddressCheck:
    """Judge one address. ``value`` may be text (IPv4, IPv6, with scope id) or an ipaddress object.

    Raises ``ValueError`` if ``value`` is not an IP address.
    """
    address = parse_ip(value)
    inner = embedded_ipv4(address)
    if isinstance(address, ipaddress.IPv6Address) and (address.ipv4_mapped is not None or address in NAT64_WELL_KNOWN):
        # ::ffff:a.b.c.d *is* a.b.c.d on the wire, and a NAT64 gateway forwards
        # 64:ff9b::a.b.c.d to a.b.c.d (DNS64 synthesises these for IPv4-only
        # CDNs): judge only the IPv4 address.
        candidates: tuple[IPAddress, ...] = (inner,)  # type: ignore[assignment]
    else:
        candidates = (address,) if inner is None else (address, inner)

    refusals: list[str] = []
    for candidate in candidates:
        category = _refusal_category(candidate)
        if category is None or _allow_listed(candidate, allow):
            continue
        refusals.append(category)
    if refusals:
        return AddressCheck(address, False, refusals[-1])  # the embedded IPv4's reason is the more telling one
    listed = any(_refusal_category(c) is not None for c in candidates)
    return AddressCheck(address, True, "allow_listed" if listed else "allowed")


def check_host_literal(host: str, allow: Sequence[IPNetwork] = ()) -> AddressCheck | None:
    """Judge a URL host that is an IP literal (any notation); None if it is a DNS name."""
    try:
        return check_address(host, allow)
    except ValueError:
        pass
    legacy = legacy_ipv4_literal(host)
    if legacy is not None:
        return check_address(legacy, allow)
    return None
