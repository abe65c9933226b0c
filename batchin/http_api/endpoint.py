"""The route table's element: one declaration per operation, from which both the Starlette routes
and the OpenAPI document are built, so the two never disagree.

Every authenticated operation names the one key scope it needs (`scope=`); the endpoint checks it
after admitting the key and before the handler runs (403 `permission_denied`), so no handler can
forget it, and resolves the call's entry region from the key, the peer and X-BatchIn-Region
(core/regions.py). A public operation has none.

A handler names what it touches in its signature: `(request, ctx, deps)` when authenticated,
`(request, deps)` when public, where `deps` is its route group's `RouteDeps` (a frozen record of
the few services the group uses). Without `deps` a handler is `(request, ctx)` or `(request)`.
The endpoint is the one place the app's services are looked up: it builds the group's deps once
per Services instance, so a request pays an identity check for them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchin.core.context import CallContext
from batchin.core.permissions import require_scope
from batchin.core.trace_context import continue_trace
from batchin.errors import Unauthorized
from batchin.protocol.accounts import Scope

if TYPE_CHECKING:
    from batchin.core.accounts.auth import AuthService
    from batchin.core.regions import RegionPolicy
    from batchin.services import Services

__all__ = ["Endpoint", "FormBody", "QueryParam", "RouteDeps", "bearer_secret", "openapi_path"]

# (request, ctx, deps), (request, ctx), (request, deps) or (request): see the module docstring.
Handler = Callable[..., Awaitable[Response]]


class RouteDeps(Protocol):
    """The services a route group uses, taken from the process's Services."""

    @classmethod
    def from_services(cls, services: Services) -> Self: ...


@dataclass(frozen=True)
class QueryParam:
    name: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True)
class FormBody:
    """A form request body (multipart/form-data): the text fields `model` validates, plus file
    parts. An array field is sent as repeated `name[]` parts, as the openai SDK sends them."""

    model: Any
    files: tuple[str, ...] = ("file",)
    urlencoded: bool = False  # also accepted as application/x-www-form-urlencoded (no files then)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    deps: type[RouteDeps] | None = None
    public: bool = False
    scope: Scope | None = None  # required unless public; see the module docstring
    request_model: Any = None
    response_model: Any = None
    status_code: int = 200
    tag: str = "default"
    query: tuple[QueryParam, ...] = ()
    errors: tuple[int, ...] = ()
    # Stores bytes for the caller (an upload, generated media): its 413 may also be
    # storage_quota_exceeded, the user's storage quota.
    stores_files: bool = False
    content_type: str = "application/json"
    raw_body: bool = False
    form: FormBody | None = None  # a form body, instead of or besides `request_model`'s JSON
    # Other media types of the success body (binary or text, per the request's format field).
    other_content_types: tuple[str, ...] = ()
    extra_paths: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # A wiring mistake, caught when the route table is built rather than by a caller.
        if self.public == (self.scope is not None):
            raise ValueError(
                f"{self.method} {self.path}: an authenticated operation names its scope; a public one none"
            )

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, *self.extra_paths)

    @property
    def operation_id(self) -> str:
        return getattr(self.handler, "__name__", "operation")

    def routes(self) -> list[Route]:
        endpoint = self._public_endpoint() if self.public else self._authenticated_endpoint()
        return [
            Route(path, endpoint, methods=[self.method], name=f"{self.operation_id}:{path}")
            for path in (self.path, *self.extra_paths)
        ]

    def _public_endpoint(self) -> Callable[[Request], Awaitable[Response]]:
        handler: Any = self.handler
        if self.deps is None:
            return handler  # type: ignore[no-any-return]
        resolve = _Resolver(self.deps)

        async def run(request: Request) -> Response:
            response: Response = await handler(request, resolve(request)[2])
            return response

        return run

    def _authenticated_endpoint(self) -> Callable[[Request], Awaitable[Response]]:
        handler: Any = self.handler
        resolve = _Resolver(self.deps)
        with_deps = self.deps is not None
        scope = self.scope
        if scope is None:  # __post_init__ makes this unreachable; mypy needs the narrowing
            raise ValueError(f"{self.method} {self.path} has no scope")

        async def run(request: Request) -> Response:
            auth, regions, deps = resolve(request)
            # The request's headers as one dict built in C, not a scan (and a KeyError for the ones
            # most calls do not send) each through Starlette's Headers. Names are lowercase in the
            # scope, as Headers assumes too; reversed, so a repeated header reads as its first
            # value, as Headers reads it.
            http = request.scope
            sent = dict(reversed(list(http["headers"])))
            principal, rate = await auth.admit(_bearer(_text(sent.get(b"authorization")) or ""))
            require_scope(principal, scope)
            client = http.get("client")  # what request.client.host reads, without its Address
            region = regions.resolve(
                principal,
                _text(sent.get(b"x-batchin-region")),
                peer=client[0] if client else None,
            )
            ctx = CallContext(
                principal=principal,
                request_id=http["state"]["request_id"],
                region=region,
                rate_limit=rate,
                trace=continue_trace(_text(sent.get(b"traceparent"))),
                prompt_version=_prompt_version(_text(sent.get(b"x-batchin-prompt-version"))),
            )
            response: Response = await (handler(request, ctx, deps) if with_deps else handler(request, ctx))
            _add_headers(response, rate.headers())
            return response

        return run


class _Resolver:
    """One route's view of the app's services (the key check, the region policy and its deps),
    rebuilt only when the app's Services instance changes (the lifespan sets it after the routes are
    built)."""

    __slots__ = ("_built", "_deps", "_for")

    def __init__(self, deps: type[RouteDeps] | None) -> None:
        self._deps = deps
        self._for: Services | None = None
        self._built: tuple[AuthService, RegionPolicy, Any] | None = None

    def __call__(self, request: Request) -> tuple[AuthService, RegionPolicy, Any]:
        services: Services = request.app.state.services
        if services is not self._for or self._built is None:
            deps = None if self._deps is None else self._deps.from_services(services)
            self._built = (services.auth, services.regions, deps)
            self._for = services
        return self._built


def _add_headers(response: Response, headers: dict[str, str]) -> None:
    """`response.headers.update(headers)`: appended to the raw list when the response has none of
    these names yet (always, for our handlers), not looked up one by one through MutableHeaders."""
    raw = response.raw_headers
    added = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    present = dict(raw)
    if any(name in present for name, _ in added):
        response.headers.update(headers)
    else:
        raw.extend(added)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _prompt_version(header: str | None) -> str:
    value = (header or "").strip()
    return value[:200] if value else "default"


def openapi_path(path: str) -> str:
    """A route path as OpenAPI writes it: Starlette's converters (`{id:path}`) dropped."""
    return re.sub(r"{(\w+):\w+}", r"{\1}", path)


def bearer_secret(request: Request) -> str:
    return _bearer(request.headers.get("authorization", ""))


def _bearer(header: str) -> str:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Invalid or missing API key. Send Authorization: Bearer <API_KEY>.")
    return value.strip()
