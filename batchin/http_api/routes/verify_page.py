"""The browser verification page (/verify/{id}) and its assets: a fixed set of files shipped in the
package, each read once. Any other name is a 404 that reads and keeps nothing, so requests for
made-up names cannot grow the process's memory."""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

from batchin.errors import NotFound
from batchin.http_api.endpoint import Endpoint

__all__ = ["ASSETS", "ENDPOINTS"]

# The page's own scripts only: no inline code, nothing from another origin.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
_PAGE = "index.html"
# Every file /verify/assets/ serves, with its media type; index.html names the first four. verify.js
# is the verifier alone (no side effects), so the console's receipts page loads it too.
ASSETS = {
    "verify.js": "text/javascript; charset=utf-8",
    "verify-page.js": "text/javascript; charset=utf-8",
    "verify.css": "text/css; charset=utf-8",
    "nacl-fast.min.js": "text/javascript; charset=utf-8",
    "LICENSE-tweetnacl.txt": "text/plain; charset=utf-8",
}


@cache
def _shipped(name: str) -> bytes | None:
    # Called only with _PAGE or a key of ASSETS, so this cache holds at most those few files.
    file = resources.files("batchin.http_api").joinpath("static", "verify", name)
    return file.read_bytes() if file.is_file() else None


async def get_verify_page(request: Request) -> Response:
    page = _shipped(_PAGE)
    if page is None:  # pragma: no cover - a broken install
        raise NotFound("The verification page is not installed.")
    return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def get_verify_asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    body = _shipped(name) if media_type is not None else None
    if media_type is None or body is None:
        raise NotFound(f"No asset named '{name[:100]}'.")
    return Response(body, media_type=media_type, headers=_PAGE_HEADERS)


def cached_files() -> int:
    """How many files the asset cache holds (tests: unknown names must not add any)."""
    return _shipped.cache_info().currsize


ENDPOINTS = [
    Endpoint(
        "GET",
        "/verify/{id}",
        get_verify_page,
        "A page that verifies an audit record's evidence pack in the browser.",
        content_type="text/html",
        public=True,
        tag="audit",
    ),
    Endpoint(
        "GET",
        "/verify/assets/{name}",
        get_verify_asset,
        "The verification page's scripts and styles.",
        content_type="text/javascript",
        errors=(404,),
        public=True,
        tag="audit",
    ),
]
