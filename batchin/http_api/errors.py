"""The HTTP surface's one error mapping: every failure leaves as the error envelope."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from batchin.errors import BatchInError, InvalidRequest, MethodNotAllowed, NotFound, PayloadTooLarge
from batchin.http_api.rendering import JSONResponse
from batchin.http_api.streaming import CLIENT_CLOSED_REQUEST, ClientDisconnected

log = logging.getLogger("batchin.http")


def error_response(error: BatchInError) -> Response:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def handle_batchin_error(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, BatchInError):
        raise exc
    return error_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        raise exc
    error: BatchInError
    if exc.status_code == 404:
        error = NotFound(f"No route for {request.method} {request.url.path}.")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}.")
        allowed = _allowed_methods(request)
        if allowed:
            error.headers["Allow"] = allowed
    elif exc.status_code == 413:
        error = PayloadTooLarge("Request body too large.")
    else:
        error = InvalidRequest(str(exc.detail))
    return error_response(error)


def _allowed_methods(request: Request) -> str:
    # Starlette's 405 names only the first route matching the path; one path may have several routes.
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


async def handle_client_gone(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ClientDisconnected):
        raise exc
    return Response(status_code=CLIENT_CLOSED_REQUEST)  # its work was cancelled; nobody reads this


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # The traceback goes to the operator's log; the caller gets the envelope and a request id to quote.
    request_id = request.scope.get("state", {}).get("request_id")
    log.error(
        "unhandled error on %s %s (request %s)", request.method, request.url.path, request_id, exc_info=exc
    )
    body = BatchInError("Internal server error. Quote the X-Request-Id header when reporting it.").body()
    headers = {"X-Request-Id": request_id} if request_id else None
    return JSONResponse(body, status_code=500, headers=headers)


EXCEPTION_HANDLERS = {
    BatchInError: handle_batchin_error,
    HTTPException: handle_http_exception,
    ClientDisconnected: handle_client_gone,
    Exception: handle_unexpected,
}
