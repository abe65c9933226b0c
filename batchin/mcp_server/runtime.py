"""What an MCP server needs from its host process: the services (built in the app lifespan, so
set after the server is assembled) and, for stdio and in-memory clients, whose key to act with;
and the services as each tool or resource group declares them (`ToolDeps`, see caller.uses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, cast

from batchin.errors import ServiceUnavailable

if TYPE_CHECKING:
    from batchin.services import Services

__all__ = ["McpRuntime", "ServiceViews", "ToolDeps"]


class ToolDeps(Protocol):
    """The services a tool or resource group uses, taken from the process's Services."""

    @classmethod
    def from_services(cls, services: Services) -> Self: ...


D = TypeVar("D", bound=ToolDeps)


class ServiceViews:
    """One Services instance as each group's `ToolDeps`, each built on first use and then reused,
    so a call pays a dictionary lookup for its dependencies."""

    __slots__ = ("_built", "services")

    def __init__(self, services: Services) -> None:
        self.services = services
        self._built: dict[type[Any], Any] = {}

    def get(self, kind: type[D]) -> D:
        found = self._built.get(kind)
        if found is None:
            found = self._built[kind] = kind.from_services(self.services)
        return cast(D, found)


@dataclass(slots=True)
class McpRuntime:
    services: Services | None = None
    # stdio has no Authorization header: the key comes from BATCHIN_API_KEY. None over HTTP, where
    # a request without a bearer key never reaches a tool (401).
    local_api_key: str | None = None
    # How often a resource subscription reads its job's row (resources/watches.py).
    watch_interval_seconds: float = 1.0
    _views: ServiceViews | None = field(default=None, init=False, repr=False)

    def require_services(self) -> Services:
        if self.services is None:
            raise ServiceUnavailable("The server is still starting; retry in a moment.")
        return self.services

    def views(self) -> ServiceViews:
        """The current services' views, made anew only when the services themselves change."""
        services = self.require_services()
        if self._views is None or self._views.services is not services:
            self._views = ServiceViews(services)
        return self._views
