"""The one error hierarchy. Core raises these; each surface maps them in exactly one place.

BatchInError                  500 internal_error
├── InvalidRequest            400 invalid_request  (param names the field at fault)
├── Unauthorized              401 unauthorized
├── PaymentRequired           402 payment_required
├── PermissionDenied          403 permission_denied (outside the key's scopes or models)
├── NotFound                  404 not_found
├── MethodNotAllowed          405 method_not_allowed
├── PayloadTooLarge           413 payload_too_large
│   └── StorageQuotaExceeded  413 storage_quota_exceeded (the user's stored files would pass the quota)
├── RateLimited               429 rate_limited      (retry_after seconds → Retry-After)
├── NotImplementedYet         501 not_implemented
└── ServiceUnavailable        503 service_unavailable
"""

from __future__ import annotations

from typing import Any, ClassVar


class BatchInError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    type: ClassVar[str] = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The error envelope: `param` is always present (null when no parameter is at fault)."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


class InvalidRequest(BatchInError):
    status = 400
    code = "invalid_request"
    type = "invalid_request_error"


class Unauthorized(BatchInError):
    status = 401
    code = "unauthorized"
    type = "authentication_error"


class PaymentRequired(BatchInError):
    status = 402
    code = "payment_required"
    type = "insufficient_quota"


class PermissionDenied(BatchInError):
    status = 403
    code = "permission_denied"
    type = "permission_error"


class NotFound(BatchInError):
    status = 404
    code = "not_found"
    type = "invalid_request_error"


class MethodNotAllowed(BatchInError):
    status = 405
    code = "method_not_allowed"
    type = "invalid_request_error"


class PayloadTooLarge(BatchInError):
    status = 413
    code = "payload_too_large"
    type = "invalid_request_error"


class StorageQuotaExceeded(PayloadTooLarge):
    """Storing these bytes would take the user's stored files past BATCHIN_STORAGE_QUOTA_BYTES.
    Refused before anything is stored or charged (docs/reference/retention.mdx)."""

    code = "storage_quota_exceeded"
    type = "insufficient_quota"


class RateLimited(BatchInError):
    status = 429
    code = "rate_limited"
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float, headers: dict[str, str] | None = None) -> None:
        merged = {"Retry-After": str(max(1, int(retry_after + 0.999)))}
        merged.update(headers or {})
        super().__init__(message, headers=merged)
        self.retry_after = retry_after


class Preempted(RateLimited):
    """A fill-priority call gave its slot to a call of higher priority before it finished. Like a
    rate limit it is capacity, not a fault: a batch task runs again, without using up a retry, and
    its attempt is released like a cancelled one (nothing charged, no usage log). Raised in the
    API process whose slot was taken, or carried back from the shared engine's gate of
    `serve --workers N` (models/engine_relay.py)."""

    def __init__(self) -> None:
        super().__init__(
            "The model was needed by a call of higher priority; this fill-priority call stopped.",
            retry_after=0.0,
        )


class NotImplementedYet(BatchInError):
    status = 501
    code = "not_implemented"
    type = "server_error"


class ServiceUnavailable(BatchInError):
    status = 503
    code = "service_unavailable"
    type = "server_error"


class WorkLost(ServiceUnavailable):
    """The process doing the call's work died with it (an engine worker's crash): the call is as if
    it never ran, so metering releases its reservation and writes no usage log."""
