"""The download address policy (galleryrank.consumer.images.netguard) and the pieces of galleryrank.consumer.images.download that apply it
without network I/O: URL validation, the filtering resolver and the guarded socket factory."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver

from galleryrank.consumer.images.download import (
    DownloadError,
    GuardedResolver,
    guarded_socket_factory,
    redact_url,
    validate_url,
)
from galleryrank.consumer.images.netguard import (
    BlockedAddressError,
    check_address,
    check_host_literal,
    embedded_ipv4,
    legacy_ipv4_literal,
    parse_allow_networks,
)

LOOPBACK_ONLY = parse_allow_networks("127.0.0.0/8")

REFUSED = [
    # IPv4
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.1.1", "link_local"),
    ("169.254.169.254", "metadata"),  # AWS/GCP/Azure IMDS
    ("169.254.170.2", "metadata"),  # ECS task metadata
    ("100.100.100.200", "metadata"),  # Alibaba
    ("192.0.0.192", "metadata"),  # Oracle: globally routable by the tables, listed explicitly
    ("168.63.129.16", "metadata"),  # Azure WireServer: globally routable, listed explicitly
    ("100.64.0.1", "cgnat"),
    ("100.127.255.254", "cgnat"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "private"),  # "this network"
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),  # SSDP
    ("240.0.0.1", "private"),  # reserved class E, private in ipaddress' table
    ("255.255.255.255", "private"),
    ("192.0.2.10", "private"),  # TEST-NET-1
    ("198.18.0.1", "private"),  # benchmarking
    # IPv6
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link_local"),
    ("fe80::1%eth0", "link_local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fd00:ec2::254", "metadata"),  # AWS IMDS over IPv6
    ("ff02::1", "multicast"),
    ("2001:db8::1", "private"),  # documentation
    ("fec0::1", "site_local"),
    # IPv6 that reaches an IPv4 address: judged by that address
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "metadata"),
    ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 of 169.254.169.254
    ("64:ff9b::10.0.0.1", "private"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
    ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible form
]

ALLOWED = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "151.101.1.69",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82b::200e",
    "::ffff:8.8.8.8",  # mapped public address
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8 (DNS64 networks)
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize(("address", "category"), REFUSED)
def test_refused_by_default(address: str, category: str) -> None:
    verdict = check_address(address)
    assert not verdict
    assert verdict.category == category


@pytest.mark.parametrize("address", ALLOWED)
def test_public_unicast_allowed(address: str) -> None:
    verdict = check_address(address)
    assert verdict
    assert verdict.category == "allowed"


def test_allow_list_opens_only_its_networks() -> None:
    assert check_address("127.0.0.1", LOOPBACK_ONLY).category == "allow_listed"
    assert check_address("::ffff:127.0.0.1", LOOPBACK_ONLY), "mapped loopback is loopback"
    assert not check_address("::1", LOOPBACK_ONLY), "an IPv4 range does not open IPv6 loopback"
    assert not check_address("10.0.0.1", LOOPBACK_ONLY)
    assert not check_address("169.254.169.254", LOOPBACK_ONLY)
    assert check_address("10.9.8.7", parse_allow_networks("10.0.0.0/8, 192.168.0.0/16"))


def test_metadata_needs_its_exact_address_in_the_allow_list() -> None:
    assert not check_address("169.254.169.254", parse_allow_networks("169.254.0.0/16"))
    assert check_address("169.254.1.1", parse_allow_networks("169.254.0.0/16"))
    assert check_address("169.254.169.254", parse_allow_networks("169.254.169.254/32"))
    assert not check_address("fd00:ec2::254", parse_allow_networks("fd00::/8"))


def test_parse_allow_networks() -> None:
    assert parse_allow_networks("") == ()
    assert parse_allow_networks(None) == ()
    assert parse_allow_networks(" 127.0.0.0/8 , ,::1/128") == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert parse_allow_networks("10.1.2.3/8") == (ipaddress.ip_network("10.0.0.0/8"),)  # host bits tolerated
    with pytest.raises(ValueError, match="not a CIDR"):
        parse_allow_networks("127.0.0.0/8,localhost")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f.0.0.1", "127.0.0.1"),  # hex
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),  # short form
        ("017700000001", "127.0.0.1"),
        ("3232235777", "192.168.1.1"),
        ("2852039166", "169.254.169.254"),
    ],
)
def test_legacy_ipv4_literals_are_judged_by_the_address_they_reach(host: str, address: str) -> None:
    assert legacy_ipv4_literal(host) == ipaddress.ip_address(address)
    verdict = check_host_literal(host)
    assert verdict is not None and not verdict
    assert str(verdict.address) == address


@pytest.mark.parametrize("host", ["example.com", "cdn.example.com", "face.bad", "deadbeef", "xn--bcher-kva.example"])
def test_dns_names_are_not_literals(host: str) -> None:
    assert check_host_literal(host) is None


def test_embedded_ipv4() -> None:
    assert embedded_ipv4(ipaddress.ip_address("::ffff:1.2.3.4")) == ipaddress.ip_address("1.2.3.4")
    assert embedded_ipv4(ipaddress.ip_address("64:ff9b::102:304")) == ipaddress.ip_address("1.2.3.4")
    assert embedded_ipv4(ipaddress.ip_address("2002:102:304::")) == ipaddress.ip_address("1.2.3.4")
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1")) is None
    assert embedded_ipv4(ipaddress.ip_address("1.2.3.4")) is None


# --------------------------------------------------------------------------- URL validation
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "bad_scheme"),
        ("gopher://example.com:70/_GET", "bad_scheme"),
        ("ftp://example.com/a.jpg", "bad_scheme"),
        ("data:image/png;base64,iVBORw0KGgo=", "bad_scheme"),
        ("javascript:alert(1)", "bad_scheme"),
        ("dict://127.0.0.1:11211/stat", "bad_scheme"),
        ("//example.com/a.jpg", "bad_scheme"),
        ("example.com/a.jpg", "bad_scheme"),
        ("", "bad_url"),
        ("http://", "bad_url"),
        ("http://exa mple.com/\x00a.jpg", "bad_url"),
        ("http://example.com:99999/a.jpg", "bad_url"),
        ("http://example.com/" + "a" * 9000, "bad_url"),
        ("http://user:hunter2@example.com/a.jpg", "credentials_in_url"),
        ("https://token@example.com/a.jpg", "credentials_in_url"),
        ("http://127.0.0.1/a.jpg", "blocked_address"),
        ("http://[::1]/a.jpg", "blocked_address"),
        ("http://[::ffff:127.0.0.1]/a.jpg", "blocked_address"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "blocked_address"),
        ("http://169.254.169.254/latest/meta-data/iam/", "blocked_address"),
        ("http://2130706433/a.jpg", "blocked_address"),
        ("http://0177.0.0.1/a.jpg", "blocked_address"),
        ("http://0x7f.1/a.jpg", "blocked_address"),
        ("http://10.0.0.1:6379/", "blocked_address"),
        ("http://100.64.0.1/", "blocked_address"),
    ],
)
def test_validate_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(DownloadError) as info:
        validate_url(url, ())
    assert info.value.reason == reason
    assert info.value.retriable is False
    assert "hunter2" not in str(info.value)


def test_validate_url_accepts_public_http_and_https() -> None:
    assert (
        str(validate_url("https://cdn.example.com/h-1/7.jpg?w=800#x", ())) == "https://cdn.example.com/h-1/7.jpg?w=800"
    )
    assert validate_url("HTTP://93.184.216.34:8080/a.jpg", ()).port == 8080
    assert validate_url("http://127.0.0.1:8080/a.jpg", LOOPBACK_ONLY).host == "127.0.0.1"


def test_non_canonical_literal_of_an_allowed_address_is_still_refused() -> None:
    # aiohttp would refuse to connect to such a host; say so clearly instead.
    with pytest.raises(DownloadError) as info:
        validate_url("http://2130706433/a.jpg", LOOPBACK_ONLY)
    assert info.value.reason == "bad_url"


def test_redact_url_drops_userinfo_query_and_fragment() -> None:
    shown = redact_url("https://bob:s3cret@cdn.example.com:8443/p/a.jpg?X-Amz-Signature=abc123#frag")
    assert shown == "https://cdn.example.com:8443/p/a.jpg"
    assert redact_url("http://[::1]:81/x") == "http://[::1]:81/x"


# --------------------------------------------------------------------------- resolver and socket guard
class FixedResolver(AbstractResolver):
    """Answers every name with fixed addresses (stands in for an attacker's DNS)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.calls = 0

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
        self.calls += 1
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


def test_guarded_resolver_drops_refused_answers() -> None:
    inner = FixedResolver("10.0.0.7", "93.184.216.34", "169.254.169.254", "::1", "2606:4700::1")
    answers = asyncio.run(GuardedResolver((), inner).resolve("cdn.example.com", 443))
    assert [a["host"] for a in answers] == ["93.184.216.34", "2606:4700::1"]


def test_guarded_resolver_raises_when_every_answer_is_refused() -> None:
    inner = FixedResolver("127.0.0.1", "::1")
    with pytest.raises(BlockedAddressError) as info:
        asyncio.run(GuardedResolver((), inner).resolve("rebind.attacker.example", 80))
    assert info.value.verdict.category == "loopback"
    assert "rebind.attacker.example" in str(info.value)
    assert isinstance(info.value, OSError)  # aiohttp keeps OSErrors from resolvers as the cause


def test_guarded_resolver_honours_allow_list() -> None:
    inner = FixedResolver("10.0.0.7", "127.0.0.1")
    answers = asyncio.run(GuardedResolver(LOOPBACK_ONLY, inner).resolve("localhost", 80))
    assert [a["host"] for a in answers] == ["127.0.0.1"]


def test_socket_factory_refuses_refused_addresses_and_builds_allowed_ones() -> None:
    factory = guarded_socket_factory(LOOPBACK_ONLY)
    with pytest.raises(BlockedAddressError):
        factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80)))
    with pytest.raises(BlockedAddressError):
        factory((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 80, 0, 0)))
    sock = factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    try:
        assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
    finally:
        sock.close()
