"""Who is calling and on whose behalf: passed explicitly into every core function."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from batchin.core.clock import utcnow
from batchin.core.trace_context import TraceContext, continue_trace, new_run_id
from batchin.protocol.accounts import ALL_SCOPES, Scope
from batchin.protocol.currency import DEFAULT_CURRENCY, Currency


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated API key and the user it belongs to, with what the key may do
    (core/permissions.py checks it). Keys read from the store always carry their own scopes,
    models and regions; the defaults (every scope, model and region) are an operator's full key."""

    user_id: str
    key_id: str
    key_prefix: str
    rate_limit_rpm: int
    monthly_budget_cents: int | None
    scopes: frozenset[Scope] = frozenset(ALL_SCOPES)
    models: frozenset[str] = frozenset()  # empty: every model
    regions: tuple[str, ...] = ()  # empty: every region; else in order of preference (core/regions.py)
    # False for a self-service account whose email is not verified yet: paid scopes are refused.
    verified: bool = True
    # The account's currency: which catalog prices the key's calls are charged at, and the unit of
    # its budget and of every amount it is shown.
    currency: Currency = DEFAULT_CURRENCY


@dataclass(frozen=True, slots=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_seconds: float

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": f"{self.reset_seconds:.3f}",
        }


@dataclass(slots=True)
class BatchBilling:
    """How a batch task's call is billed (see core/billing/metering.py): at `price_ratio` of the
    standard price, under a reservation id the batch fixed. One call per context."""

    price_ratio: Fraction
    reservation_id: str
    # The succeeded call, left for the batch worker to settle with the task's result. Typed loosely
    # because the call context sits below billing; `metering.succeeded_call` reads it typed.
    call: object | None = None


@dataclass(slots=True)
class CallContext:
    principal: Principal
    request_id: str
    # The entry region, resolved by core/regions.py from what the operator trusts; None (a batch
    # task, an experiment replay) means the key's own default region.
    region: str | None = None
    rate_limit: RateLimitState | None = None
    trace: TraceContext = field(default_factory=lambda: continue_trace(None))
    run_id: str = field(default_factory=new_run_id)
    prompt_version: str = "default"
    started_at: float = field(default_factory=lambda: utcnow().timestamp())
    # Set for a batch task only: its price ratio, and the settlement left to the batch worker.
    billing: BatchBilling | None = None
    # X-VaaS-* of the call's signed audit record, set by serving when a non-text call's record is
    # logged (serving/served_calls.py), so routes and tools render it without a second return value.
    receipt_headers: dict[str, str] = field(default_factory=dict)

    def response_headers(self) -> dict[str, str]:
        """The run receipt headers every inference response carries (X-Request-Id is added by the
        HTTP middleware), with the audit record's X-VaaS-* once it is signed."""
        return {
            "traceparent": self.trace.traceparent,
            "X-BatchIn-Run-Id": self.run_id,
            "X-BatchIn-Prompt-Version": self.prompt_version,
            **self.receipt_headers,
        }
