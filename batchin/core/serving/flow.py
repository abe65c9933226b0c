"""Flow policy: which admission pool a call joins (its user's lane, or the shared one), and the
entry region's per-model RPM limits (the seed's 区域级限流). The region is the one the surface
resolved from what the operator trusts (core/regions.py), or the key's default region."""

from __future__ import annotations

from batchin.config import LaneConfig, Settings
from batchin.core.billing.limits import RateLimiter
from batchin.core.context import CallContext
from batchin.core.regions import REGION_HEADER, RegionPolicy
from batchin.core.serving.admission import AdmissionController, AdmissionPool
from batchin.errors import InvalidRequest, RateLimited
from batchin.models.catalog import CatalogEntry

SHARED_LANE = "shared"


class FlowPolicy:
    def __init__(
        self,
        settings: Settings,
        limiter: RateLimiter,
        admission: AdmissionController,
        regions: RegionPolicy | None = None,
    ) -> None:
        self._limiter = limiter
        self._admission = admission
        self._lane_of_user: dict[str, LaneConfig] = {
            user: lane for lane in settings.lanes for user in lane.users
        }
        self._regions = regions or RegionPolicy(settings)
        self._region_rpm = {(r.region, r.model): r.rpm for r in settings.region_limits}

    def region_of(self, ctx: CallContext) -> str:
        region = ctx.region or self._regions.default_for(ctx.principal)
        if region not in self._regions.served:
            raise InvalidRequest(
                f"Unknown region '{region}'; this deployment serves {sorted(self._regions.served)}.",
                param=REGION_HEADER,
            )
        return region

    async def admit(self, ctx: CallContext, entry: CatalogEntry) -> AdmissionPool:
        """Check region and lane limits; return the pool this call queues in."""
        region = self.region_of(ctx)
        if entry.regions and region not in entry.regions:
            raise InvalidRequest(
                f"Model '{entry.id}' is not served in region '{region}' (served in {list(entry.regions)}).",
                param="model",
            )
        rpm = self._region_rpm.get((region, entry.id))
        if rpm is not None:
            await self._hit(f"region:{region}:{entry.id}", rpm, f"region '{region}' for model '{entry.id}'")
        lane = self._lane_of_user.get(ctx.principal.user_id)
        if lane is None:
            return self._admission.pool(
                entry.id, lane=SHARED_LANE, max_concurrency=entry.max_concurrency, queue_size=entry.queue_size
            )
        if lane.rpm is not None:
            await self._hit(f"lane:{lane.name}", lane.rpm, f"lane '{lane.name}'")
        return self._admission.pool(
            entry.id, lane=lane.name, max_concurrency=lane.max_concurrency, queue_size=lane.queue_size
        )

    async def _hit(self, bucket: str, rpm: int, what: str) -> None:
        decision = await self._limiter.hit(bucket, rpm)
        if not decision.allowed:
            raise RateLimited(
                f"Rate limit of {rpm} requests per minute reached for {what}; "
                f"retry after {decision.retry_after:.1f}s.",
                retry_after=decision.retry_after,
                headers=decision.state.headers(),
            )
