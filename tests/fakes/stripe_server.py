"""A fake Stripe API on a real local port, for the official `stripe` SDK (pointed at it through
`StripeClient(base_addresses={"api": url})`, which BatchIn does for `Settings(stripe_api_base=url)`).

What it reproduces, because the code under test depends on it:
- `POST /v1/checkout/sessions` form-encoded with Stripe's bracket notation (`line_items[0][quantity]`),
  checked against the Bearer secret key; the Checkout Session object it returns (`cs_test_…`, `url`,
  `amount_total` from the line items, `metadata`, `client_reference_id`, `payment_status: "unpaid"`);
  `GET /v1/checkout/sessions/{id}`.
- `payment_method_types[]` as Stripe checks them for a Checkout Session: each a known type whose
  currencies include the session's (card: any; alipay and wechat_pay: CNY among a few others),
  `wechat_pay` only with `payment_method_options[wechat_pay][client]` (web, ios, android; Checkout
  takes web); the session echoes both (default `["card"]`), and `complete(session_id, method)` pays
  a session with one of its offered methods the way the customer's choice would.
- Stripe's error shape `{"error": {"type", "message", "code"?, "param"?}}` with its statuses (401 bad
  key, 400 bad or missing param, 404 unknown URL or id), a `Request-Id` header on every response, and
  idempotency keys (same key and parameters replay the first answer; other parameters are refused).
- Webhook deliveries: `paid_event()` builds the `checkout.session.completed` event Stripe would send
  for a session, `signature_header()` signs a body the way Stripe does (`t=…,v1=HMAC-SHA256`).
`fail_next()` makes the next requests answer a given error, to test how the caller copes.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import stripe
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_VERSION = stripe.api_version
_MINIMUM_AMOUNT = {"usd": 50, "eur": 50, "gbp": 30}
# The currencies each payment method type takes (Stripe's payment method docs); None: any currency.
_METHOD_CURRENCIES: dict[str, frozenset[str] | None] = {
    "card": None,
    "alipay": frozenset({"cny", "aud", "cad", "eur", "gbp", "hkd", "jpy", "myr", "nzd", "sgd", "usd"}),
    "wechat_pay": frozenset(
        {"cny", "aud", "cad", "chf", "dkk", "eur", "gbp", "hkd", "jpy", "nok", "sek", "sgd", "usd"}
    ),
}
_WECHAT_CLIENTS = ("web", "ios", "android")


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, Any]


@dataclass
class FakeStripe:
    api_key: str
    url: str = ""
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    _failures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    _idempotent: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(
        self, status: int, error_type: str = "api_error", message: str = "Injected.", times: int = 1
    ) -> None:
        with self._lock:
            self._failures.extend([(status, {"type": error_type, "message": message})] * times)

    def reset(self) -> None:
        with self._lock:
            self.sessions.clear()
            self.requests.clear()
            self._failures.clear()
            self._idempotent.clear()

    def paid_event(self, session_id: str, event_type: str = "checkout.session.completed") -> dict[str, Any]:
        """The event Stripe sends once the customer has paid for this session."""
        session = {**self.sessions[session_id], "payment_status": "paid", "status": "complete"}
        return self.event(session, event_type)

    def complete(self, session_id: str, method: str) -> dict[str, Any]:
        """The customer pays with `method`, which the session must offer (as Stripe's page shows
        only those); the session is then complete and the paid event is returned to deliver."""
        with self._lock:
            session = self.sessions[session_id]
            if method not in session["payment_method_types"]:
                raise ValueError(f"session {session_id} does not offer {method}")
            session.update(payment_status="paid", status="complete")
        return self.event(dict(session), "checkout.session.completed")

    def event(self, session: dict[str, Any], event_type: str) -> dict[str, Any]:
        return {
            "id": "evt_" + secrets.token_hex(12),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
            "data": {"object": session},
        }

    # -- the HTTP side ----------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/checkout/sessions", self._create_session, methods=["POST"]),
                Route("/v1/checkout/sessions/{id}", self._retrieve_session, methods=["GET"]),
                Route("/{path:path}", self._unknown, methods=["GET", "POST", "DELETE"]),
            ]
        )

    async def _create_session(self, request: Request) -> Response:
        params = decode_form((await request.body()).decode())
        refusal = self._admit(request, params)
        if refusal is not None:
            return refusal
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key:
            with self._lock:
                seen = self._idempotent.get(idempotency_key)
            if seen is not None:
                first_params, status, body = seen
                if first_params != params:
                    return _error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they "
                        "were first used with.",
                    )
                return _json(status, body, {"Idempotent-Replayed": "true"})
        status, body = self._new_session(params)
        if idempotency_key:
            with self._lock:
                self._idempotent[idempotency_key] = (params, status, body)
        return _json(status, body)

    def _new_session(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for name in ("mode", "success_url"):
            if not params.get(name):
                return _error_body(400, f"Missing required param: {name}.", param=name)
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            return _error_body(400, "Missing required param: line_items.", param="line_items")
        total, currency = 0, None
        for index, item in enumerate(items):
            price = item.get("price_data") or {}
            where = f"line_items[{index}][price_data]"
            if not str(price.get("unit_amount", "")).isdigit():
                return _error_body(
                    400, f"Invalid integer: {price.get('unit_amount')}", param=f"{where}[unit_amount]"
                )
            if not price.get("currency"):
                return _error_body(
                    400, f"Missing required param: {where}[currency].", param=f"{where}[currency]"
                )
            if not (price.get("product_data") or {}).get("name"):
                return _error_body(400, f"Missing required param: {where}[product_data][name].")
            currency = str(price["currency"]).lower()
            total += int(price["unit_amount"]) * int(item.get("quantity", "1"))
        if currency and total < _MINIMUM_AMOUNT.get(currency, 1):
            return _error_body(
                400, "The Checkout Session's total amount due must add up to at least the minimum charge."
            )
        methods, refusal = _payment_methods(params, currency or "")
        if refusal is not None:
            return refusal
        session_id = "cs_test_" + secrets.token_urlsafe(42).replace("-", "a").replace("_", "b")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": int(time.time()),
            "currency": currency,
            "customer": None,
            "expires_at": int(time.time()) + 24 * 3600,
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "mode": params["mode"],
            "payment_intent": None,
            "payment_method_options": params.get("payment_method_options") or {},
            "payment_method_types": methods,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params["success_url"],
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        }
        with self._lock:
            self.sessions[session_id] = session
        return 200, session

    async def _retrieve_session(self, request: Request) -> Response:
        refusal = self._admit(request, {})
        if refusal is not None:
            return refusal
        session = self.sessions.get(request.path_params["id"])
        if session is None:
            return _error(
                404,
                "invalid_request_error",
                f"No such checkout.session: '{request.path_params['id']}'",
                code="resource_missing",
                param="session",
            )
        return _json(200, session)

    async def _unknown(self, request: Request) -> Response:
        return _error(
            404, "invalid_request_error", f"Unrecognized request URL ({request.method}: {request.url.path})."
        )

    def _admit(self, request: Request, params: dict[str, Any]) -> Response | None:
        with self._lock:
            self.requests.append(
                RecordedRequest(request.method, request.url.path, dict(request.headers), params)
            )
            failure = self._failures.pop(0) if self._failures else None
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not key:
            return _error(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if not secrets.compare_digest(key, self.api_key):
            return _error(401, "invalid_request_error", f"Invalid API Key provided: {key[:8]}****{key[-4:]}")
        if failure is not None:
            status, error = failure
            return _json(status, {"error": error})
        return None


def _payment_methods(
    params: dict[str, Any], currency: str
) -> tuple[list[str], tuple[int, dict[str, Any]] | None]:
    """The session's payment method types, or Stripe's refusal of them."""
    methods = params.get("payment_method_types", ["card"])
    if not isinstance(methods, list) or not methods:
        return [], _error_body(400, "Invalid array", param="payment_method_types")
    for index, method in enumerate(methods):
        if method not in _METHOD_CURRENCIES:
            return [], _error_body(
                400,
                f"Invalid payment_method_types[{index}]: must be one of {', '.join(_METHOD_CURRENCIES)}",
                param=f"payment_method_types[{index}]",
            )
        allowed = _METHOD_CURRENCIES[method]
        if allowed is not None and currency not in allowed:
            return [], _error_body(
                400,
                f"The currency provided ({currency}) is invalid for one or more payment method types on "
                f"this Checkout Session. The payment method `{method}` supports the following "
                f"currencies: {', '.join(sorted(allowed))}.",
                param="payment_method_types",
            )
    options = params.get("payment_method_options") or {}
    if "wechat_pay" in methods:
        client = (options.get("wechat_pay") or {}).get("client")
        if not client:
            return [], _error_body(
                400,
                "Missing required param: payment_method_options[wechat_pay][client].",
                param="payment_method_options[wechat_pay][client]",
            )
        if client not in _WECHAT_CLIENTS:
            return [], _error_body(
                400,
                "Invalid payment_method_options[wechat_pay][client]: must be one of "
                + ", ".join(_WECHAT_CLIENTS),
                param="payment_method_options[wechat_pay][client]",
            )
    return list(methods), None


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding back to nested objects: `a[b][0][c]=1` → {"a": {"b": [{"c": "1"}]}}."""
    root: dict[str, Any] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        head, _, rest = name.partition("[")
        path = [head, *(rest.rstrip("]").split("][") if rest else [])]
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe would send with this body."""
    return str(stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, timestamp))


def _error_body(status: int, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if param is not None:
        error["param"] = param
        if message.startswith("Missing"):
            error["code"] = "parameter_missing"
        elif message.startswith("Invalid integer"):
            error["code"] = "parameter_invalid_integer"
    return status, {"error": error}


def _error(status: int, error_type: str, message: str, **extra: str) -> Response:
    return _json(status, {"error": {"type": error_type, "message": message, **extra}})


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        body,
        status_code=status,
        headers={
            "Request-Id": "req_" + secrets.token_hex(7),
            "Stripe-Version": API_VERSION,
            **(headers or {}),
        },
    )


@contextmanager
def running_fake_stripe(api_key: str) -> Iterator[FakeStripe]:
    """Serves a FakeStripe on 127.0.0.1 (a free port) from a background thread until the block ends."""
    fake = FakeStripe(api_key)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        fake.app(),
        loop="asyncio",
        http="h11",
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="fake-stripe")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake Stripe server did not start")
        time.sleep(0.01)
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


__all__ = ["FakeStripe", "RecordedRequest", "decode_form", "running_fake_stripe", "signature_header"]
