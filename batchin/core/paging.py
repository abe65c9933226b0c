"""A page of a list the API answers as a bare JSON array (the seed's shape for /v1/batches,
/v1/keys, /v1/usage/logs, /v1/topup/history): the items, and the query that fetches the next page.
The HTTP surface names that page in a `Link: <…>; rel="next"` header (RFC 8288), so a long list is
paged rather than cut off without a word."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Page", "page_of"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_query: dict[str, str] | None = None  # None: this is the last page


def page_of(fetched: Sequence[T], limit: int, next_query: Callable[[T], dict[str, str]]) -> Page[T]:
    """`fetched` holds up to limit + 1 items (one more than asked, to learn whether more exist);
    `next_query` makes the next page's query from this page's last item."""
    if len(fetched) > limit:
        items = list(fetched[:limit])
        return Page(items, next_query(items[-1]))
    return Page(list(fetched))
