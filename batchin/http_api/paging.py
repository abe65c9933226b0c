"""A bare-array list page as a response: the items, and when more exist a `Link: <…>; rel="next"`
header (RFC 8288). The target is a relative reference (this path, this query with the next page's
parameters), resolved against the request's own URL, so it never names a host the caller forged."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from batchin.core.paging import Page, page_of
from batchin.errors import InvalidRequest
from batchin.http_api.endpoint import QueryParam
from batchin.http_api.rendering import query_int, render

__all__ = ["PAGE_QUERY", "render_page", "slice_page"]

MAX_LIMIT = 500
# The query parameters of a list paged by slice_page, for its Endpoint declaration.
PAGE_QUERY = (
    QueryParam("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}, "page size"),
    QueryParam("offset", {"type": "integer", "minimum": 0, "default": 0}, "items to skip"),
)


def render_page(request: Request, page: Page[Any]) -> Response:
    items: list[BaseModel | Any] = page.items
    response = render(items)
    if page.next_query is not None:
        query = {**dict(request.query_params), **page.next_query}
        response.headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    return response


def slice_page(request: Request, items: list[Any], default_limit: int = 100) -> Page[Any]:
    """A page of a short list core answers whole (a user's keys, their top-ups), by the request's
    `limit` and `offset`."""
    limit, offset = query_int(request, "limit", default_limit), query_int(request, "offset", 0)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIMIT}.", param="limit")
    if offset < 0:
        raise InvalidRequest("offset must be zero or more.", param="offset")
    window = items[offset : offset + limit + 1]
    return page_of(window, limit, lambda _: {"limit": str(limit), "offset": str(offset + limit)})
