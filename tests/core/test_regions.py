"""The region policy (issue 13): a call's region comes from its key, its lane, a trusted proxy or
the default region, never from a caller's bare claim."""

from __future__ import annotations

from typing import Any

import pytest

from batchin.config import LaneConfig, Settings
from batchin.core.context import Principal
from batchin.core.regions import RegionPolicy
from batchin.errors import InvalidRequest, PermissionDenied


def policy(**settings: Any) -> RegionPolicy:
    base: dict[str, Any] = {"region": "eu", "regions": ["eu", "us", "cn"]}
    return RegionPolicy(Settings(**(base | settings)))


def key(*regions: str, user: str = "user-1") -> Principal:
    return Principal(
        user_id=user,
        key_id="key-1",
        key_prefix="batchin_api_x",
        rate_limit_rpm=60,
        monthly_budget_cents=None,
        regions=regions,
    )


def test_trusted_proxies_come_from_the_environment_as_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHIN_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.5,::1")
    regions = RegionPolicy(Settings())
    assert all(regions.trusts(peer) for peer in ("10.1.2.3", "192.168.1.5", "::1"))
    assert not regions.trusts("192.168.1.6")
    assert not regions.trusts("testclient")  # not an address: not a proxy
    assert not regions.trusts(None)


def test_a_malformed_trusted_proxy_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(trusted_proxies=["10.0.0.0/33"])


def test_no_header_enters_the_default_region_when_the_key_may_use_it() -> None:
    regions = policy()
    assert regions.resolve(key(), None, peer=None) == "eu"
    assert regions.resolve(key("us", "eu"), "", peer=None) == "eu"
    assert regions.resolve(key("us", "cn"), None, peer=None) == "us"


def test_an_untrusted_header_chooses_only_among_the_keys_regions() -> None:
    regions = policy(trusted_proxies=["10.0.0.0/8"])
    assert regions.resolve(key("us", "cn"), "cn", peer="203.0.113.9") == "cn"
    assert regions.resolve(key(), "eu", peer="203.0.113.9") == "eu"
    for principal, claimed in ((key("us"), "eu"), (key(), "us")):
        with pytest.raises(PermissionDenied) as refused:
            regions.resolve(principal, claimed, peer="203.0.113.9")
        assert refused.value.param == "X-BatchIn-Region"


def test_a_trusted_proxy_names_any_region_the_key_may_use() -> None:
    regions = policy(trusted_proxies=["10.0.0.0/8"])
    assert regions.resolve(key(), "cn", peer="10.0.0.1") == "cn"
    with pytest.raises(PermissionDenied):
        regions.resolve(key("us"), "cn", peer="10.0.0.1")


def test_an_unknown_region_is_400() -> None:
    with pytest.raises(InvalidRequest) as refused:
        policy().resolve(key(), "mars", peer=None)
    assert refused.value.param == "X-BatchIn-Region"


def test_a_lane_bounds_its_users_regions_too() -> None:
    regions = policy(lanes=[LaneConfig(name="gold", users=["vip"], regions=["us", "cn"])])
    assert regions.resolve(key(user="vip"), None, peer=None) == "us"
    assert regions.resolve(key(user="vip"), "cn", peer=None) == "cn"
    with pytest.raises(PermissionDenied):
        regions.resolve(key(user="vip"), "eu", peer=None)
    assert regions.resolve(key("cn", "eu", user="vip"), None, peer=None) == "cn"  # both bindings hold
    with pytest.raises(PermissionDenied):
        regions.resolve(key("eu", user="vip"), None, peer=None)  # nothing left to use
    assert regions.resolve(key(user="other"), None, peer=None) == "eu"


def test_regions_no_longer_served_are_not_usable() -> None:
    assert policy(regions=["eu", "us"]).resolve(key("cn", "us"), None, peer=None) == "us"
