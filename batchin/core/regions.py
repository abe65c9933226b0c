"""Which entry region a call belongs to: taken from what the operator trusts, never from what a
caller claims, since a region carries its own limits and a caller who could name any region could
step out of its limit (issue 13).

A call's regions are bounded by its key's `regions` (set when the key is made, never wider than the
creating key's) and by its user's lane `regions` (config); an empty list bounds nothing. Only regions
this deployment serves (BATCHIN_REGIONS, default [BATCHIN_REGION]) count. Then:

- without an X-BatchIn-Region header the call enters the default region (BATCHIN_REGION) when its
  key may use it, else the key's first allowed region;
- from a trusted proxy (BATCHIN_TRUSTED_PROXIES, CIDRs matched against the connection's peer
  address) the header says which region the request came in by: it is honoured if the key may use it;
- from anyone else the header only chooses among the key's own bound regions; a key bound to none
  has the default region only.

A region this deployment does not serve is 400 `invalid_request`; one the call may not use is 403
`permission_denied`; both name the header.
"""

from __future__ import annotations

import ipaddress

from batchin.config import Settings
from batchin.core.context import Principal
from batchin.errors import InvalidRequest, PermissionDenied

__all__ = ["REGION_HEADER", "RegionPolicy"]

REGION_HEADER = "X-BatchIn-Region"


class RegionPolicy:
    def __init__(self, settings: Settings) -> None:
        self.default = settings.region
        self.served: tuple[str, ...] = tuple(settings.regions or [settings.region])
        self._proxies = tuple(ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies)
        self._lane_regions = {
            user: frozenset(lane.regions) for lane in settings.lanes if lane.regions for user in lane.users
        }

    def trusts(self, peer: str | None) -> bool:
        """Whether the connection's peer is a configured proxy (an unparsable peer is not)."""
        if not peer or not self._proxies:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._proxies)

    def resolve(self, principal: Principal, header: str | None, *, peer: str | None) -> str:
        """The region of a call made with this key, carrying `header`, from `peer`."""
        claimed = (header or "").strip()
        if not claimed:
            return self.default_for(principal)
        if claimed not in self.served:
            raise InvalidRequest(
                f"Unknown region '{claimed[:64]}'; this deployment serves {sorted(self.served)}.",
                param=REGION_HEADER,
            )
        allowed = self._bound(principal)
        if allowed is None and not self.trusts(peer):
            allowed = (self.default,)  # an unbound key's caller may not pick another region's limit
        if allowed is not None and claimed not in allowed:
            raise PermissionDenied(
                f"This API key may not enter region '{claimed}' (it may use: {', '.join(allowed)}).",
                param=REGION_HEADER,
            )
        return claimed

    def default_for(self, principal: Principal) -> str:
        """The region of a call that names none: the default one when allowed, else the key's first."""
        allowed = self._bound(principal)
        if allowed is None or self.default in allowed:
            return self.default
        return allowed[0]

    def _bound(self, principal: Principal) -> tuple[str, ...] | None:
        """The served regions the key (and its user's lane) may use, in the key's order; None when
        neither binds. Raises when a binding leaves none: such a key can make no call here."""
        lane = self._lane_regions.get(principal.user_id)
        if not principal.regions and lane is None:
            return None
        order = principal.regions or self.served
        allowed = tuple(r for r in order if r in self.served and (lane is None or r in lane))
        if not allowed:
            raise PermissionDenied(
                f"This API key may use none of the regions this deployment serves: {', '.join(self.served)}.",
                param=REGION_HEADER,
            )
        return allowed
