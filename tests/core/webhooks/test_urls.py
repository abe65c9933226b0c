"""SSRF protection for webhook URLs: what is refused, what an operator's allowlist lets through."""

from __future__ import annotations

import ipaddress

import pytest

from batchin.config import Settings
from batchin.core.webhooks.urls import Resolver, UrlPolicy
from batchin.errors import InvalidRequest


def fake_dns(table: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(-2, "Name or service not known")
        return table[host]

    return resolve


PUBLIC_V4 = "93.184.215.14"
DNS = fake_dns(
    {
        "hooks.example.com": [PUBLIC_V4, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        "metadata.example.com": ["169.254.169.254"],
        "mixed.example.com": [PUBLIC_V4, "10.1.2.3"],
        "v6-loopback.example.com": ["::1"],
        "internal.corp": ["10.0.0.7"],
        "scoped.example.com": ["fe80::1%eth0"],
    }
)


async def refusal(url: str, allowed: tuple[str, ...] = ()) -> str:
    with pytest.raises(InvalidRequest) as caught:
        await UrlPolicy(allowed, DNS).check(url)
    assert caught.value.param == "webhook_url"
    assert caught.value.status == 400
    return caught.value.message


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://127.9.8.7:8080/", "loopback"),
        ("http://127.1/", "loopback"),  # inet_aton shorthand
        ("http://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
        ("http://0x7f000001/", "loopback"),
        ("http://10.0.0.5/", "private"),
        ("http://172.16.3.4/", "private"),
        ("http://172.31.255.255/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://100.127.255.254/", "carrier-grade NAT"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://239.255.255.250/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://255.255.255.255/", "reserved"),
        ("http://198.18.0.1/", "reserved"),
        ("http://[::1]/", "loopback"),
        ("http://[::]/", "unspecified"),
        ("http://[fd00::1]/", "unique local"),
        ("http://[fc12:3456::1]/", "unique local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://[ff02::1]/", "multicast"),
        ("http://[fec0::1]/", "site-local"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped
        ("http://[::ffff:7f00:1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 around 127.0.0.1
        ("http://[2002:a9fe:a9fe::1]/", "link-local"),  # 6to4 around the metadata address
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),  # NAT64 around the metadata address
        ("http://[64:ff9b:1::1]/", "local NAT64"),
        ("https://metadata.example.com/", "link-local"),
        ("https://mixed.example.com/", "private"),  # one private answer is enough
        ("https://v6-loopback.example.com/", "loopback"),
        ("https://scoped.example.com/", "link-local"),
    ],
)
async def test_non_public_addresses_are_refused(url: str, why: str) -> None:
    message = await refusal(url)
    assert why in message
    assert "BATCHIN_WEBHOOK_ALLOWED_HOSTS" in message


async def test_a_name_resolving_to_loopback_is_refused_with_the_real_resolver() -> None:
    with pytest.raises(InvalidRequest) as caught:
        await UrlPolicy().check("http://localhost:8080/hook")
    assert "localhost resolves to" in caught.value.message
    assert "loopback" in caught.value.message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://hooks.example.com/", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://127.0.0.1:70/", "http:// or https://"),
        ("hooks.example.com/path", "http:// or https://"),
        ("", "at most"),
        ("https://" + "a" * 2100 + ".com/", "at most"),
        ("http:///nohost", "no host"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("https://hooks.example.com:0/", "port"),
        ("https://hooks.example.com:99999/", "not a valid URL"),
        ("https://hooks.example.com/a b", "whitespace"),
        ("https://nowhere.invalid/", "does not resolve"),
    ],
)
async def test_malformed_or_unresolvable_urls_are_refused(url: str, fragment: str) -> None:
    assert fragment in await refusal(url)


@pytest.mark.parametrize(
    "url",
    [
        f"http://{PUBLIC_V4}/hook",
        "https://hooks.example.com/webhooks/batchin?x=1",
        "https://HOOKS.example.com./",
        "https://[2606:4700:4700::1111]:8443/",
        "http://[::ffff:8.8.8.8]/",  # mapped, but public inside
        "http://[2002:808:808::1]/",  # 6to4 of 8.8.8.8
    ],
)
async def test_public_addresses_are_accepted(url: str) -> None:
    target = await UrlPolicy((), DNS).check(url)
    assert target.addresses
    assert all(ipaddress.ip_address(a) for a in target.addresses)


async def test_the_target_names_exactly_the_checked_addresses_and_port() -> None:
    target = await UrlPolicy((), DNS).check("https://hooks.example.com/x")
    assert (target.host, target.port) == ("hooks.example.com", 443)
    assert target.addresses == (PUBLIC_V4, "2606:2800:21f:cb07:6820:80da:af6b:8b2c")


async def test_allowlisting_an_address_lets_it_through_and_nothing_else() -> None:
    policy = UrlPolicy(["127.0.0.1"], DNS)
    target = await policy.check("http://127.0.0.1:9999/hook")
    assert target.addresses == ("127.0.0.1",)
    mapped = await policy.check("http://[::ffff:127.0.0.1]:9999/")
    assert [ipaddress.ip_address(a) for a in mapped.addresses] == [ipaddress.ip_address("::ffff:127.0.0.1")]
    assert "loopback" in await refusal("http://127.0.0.2/", ("127.0.0.1",))
    assert "private" in await refusal("http://10.0.0.1/", ("127.0.0.1",))


async def test_allowlisting_a_network_or_a_host_name() -> None:
    policy = UrlPolicy(["10.0.0.0/8", "Internal.Corp.", "[::1]"], DNS)
    assert (await policy.check("http://10.20.30.40/")).addresses == ("10.20.30.40",)
    assert (await policy.check("http://internal.corp/hook")).addresses == ("10.0.0.7",)
    assert (await policy.check("http://[::1]:8000/")).addresses == ("::1",)
    assert "private" in await refusal("http://192.168.0.1/", ("10.0.0.0/8",))


def test_an_allowlist_entry_that_is_neither_host_nor_network_is_rejected() -> None:
    with pytest.raises(ValueError, match="neither a host name nor a network"):
        UrlPolicy(["bad..name"])


def test_the_allowlist_comes_from_the_environment_as_json_or_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHIN_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1, hooks.internal ,10.0.0.0/8")
    assert Settings().webhook_allowed_hosts == ["127.0.0.1", "hooks.internal", "10.0.0.0/8"]
    monkeypatch.setenv("BATCHIN_WEBHOOK_ALLOWED_HOSTS", '["::1/128", "127.0.0.1"]')
    assert Settings().webhook_allowed_hosts == ["::1/128", "127.0.0.1"]
    monkeypatch.delenv("BATCHIN_WEBHOOK_ALLOWED_HOSTS")
    assert Settings().webhook_allowed_hosts == []
