"""The Receipts and Traces pages over the real ASGI app: a served call's receipt with its cost and
trace, the look-up, the evidence pack download (the same pack as /v1/vaas/{id}/evidence), the span
waterfall, the trace filters, and that another user's record or trace is a 404 like an unknown id."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import httpx2
import orjson

from batchin.console.web import money
from batchin.protocol.accounts import UserCreated
from tests.conftest import MakeUser, bearer
from tests.console.conftest import form_post

CHAT = "smollm2-135m-instruct"


async def sign_in(client: httpx2.AsyncClient, user: UserCreated) -> None:
    client.cookies.clear()
    signed = await form_post(client, "/console/login", "/console/login/key", {"api_key": user.api_key})
    assert signed.status_code == 303, signed.text


async def asserted_record(client: httpx2.AsyncClient, user: UserCreated, output: str = "out") -> str:
    body = {"input_text": "in", "output_text": output, "model_id": "their-model"}
    made = await client.post("/v1/vaas", json=body, headers=bearer(user.api_key))
    assert made.status_code == 200, made.text
    return str(made.json()["audit_id"])


def otlp_trace(trace_id: str, model: str, *, failed: bool) -> dict[str, Any]:
    """Two spans: a 1 s parent and a child from +250 ms to +750 ms (an error when `failed`)."""
    start = 1_700_000_000_000_000_000
    spans = [
        {
            "traceId": trace_id,
            "spanId": "00000000000000a1",
            "name": "agent run",
            "kind": 2,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 1_000_000_000),
            "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": model}}],
        },
        {
            "traceId": trace_id,
            "spanId": "00000000000000a2",
            "parentSpanId": "00000000000000a1",
            "name": "tool call",
            "kind": 1,
            "startTimeUnixNano": str(start + 250_000_000),
            "endTimeUnixNano": str(start + 750_000_000),
            "status": {"code": 2 if failed else 1, "message": "boom" if failed else ""},
            "attributes": [{"key": "tool.name", "value": {"stringValue": "search"}}],
        },
    ]
    return {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": spans}]}]}


async def send_trace(client: httpx2.AsyncClient, user: UserCreated, body: dict[str, Any]) -> None:
    sent = await client.post(
        "/v1/otlp/traces",
        content=orjson.dumps(body),
        headers={**bearer(user.api_key), "Content-Type": "application/json"},
    )
    assert sent.status_code == 200, sent.text


def trace_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-trace-id="([0-9a-f]{32})">', html)


async def test_a_served_call_has_its_receipt_cost_trace_and_evidence(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    call = await client.post(
        "/v1/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        headers=bearer(user.api_key),
    )
    assert call.status_code == 200, call.text
    record_id = call.headers["X-VaaS-Record-Id"]
    trace_id = call.headers["traceparent"].split("-")[1]
    [log] = (await client.get("/v1/usage/logs", headers=bearer(user.api_key))).json()
    assert log["cost_cents"] > 0
    await sign_in(client, user)

    listing = await client.get("/console/receipts")
    assert listing.status_code == 200, listing.text
    row = listing.text.split(f'<tr data-record-id="{record_id}">')[1].split("</tr>")[0]
    assert CHAT in row
    assert "chat.completions" in row  # the kind: the call's endpoint
    assert f'href="/console/traces/{trace_id}"' in row
    assert f"<td>{money(log['cost_cents'])}</td>" in row  # the same amount the usage log charged

    page = await client.get(f"/console/receipts/{record_id}")
    assert page.status_code == 200
    assert f'data-evidence="/console/receipts/{record_id}/evidence"' in page.text
    assert '<script src="/verify/assets/verify.js" defer></script>' in page.text
    assert f'id="trace-link" href="/console/traces/{trace_id}"' in page.text
    assert "Served: this server ran the call" in page.text

    evidence = await client.get(f"/console/receipts/{record_id}/evidence")
    assert evidence.status_code == 200
    assert evidence.headers["content-disposition"] == (
        f'attachment; filename="batchin-evidence-{record_id}.json"'
    )
    public = await client.get(f"/v1/vaas/{record_id}/evidence")
    assert json.loads(evidence.text) == public.json()

    trace = await client.get(f"/console/traces/{trace_id}")
    assert trace.status_code == 200
    assert f'id="receipt-link" href="/console/receipts/{record_id}"' in trace.text
    names = re.findall(r'<span class="wf-name depth-(\d)">([^<]+)</span>', trace.text)
    assert names[0] == ("0", "batchin.call")
    assert ("1", "batchin.engine") in names
    assert trace.text.count('<rect class="wf-span"') == len(names)
    assert "<code>batchin.record_id</code>" in trace.text  # attributes, inside <details>


async def test_look_up_lists_and_caller_asserted_records(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    first = await asserted_record(client, user, "one")
    second = await asserted_record(client, user, "two")
    await sign_in(client, user)
    listing = await client.get("/console/receipts")
    assert listing.text.index(second) < listing.text.index(first)  # newest first
    assert "caller-asserted" in listing.text
    found = await client.get(f"/console/receipts?id={first}")
    assert (found.status_code, found.headers["location"]) == (303, f"/console/receipts/{first}")
    page = await client.get(found.headers["location"])
    assert "Caller-asserted: you supplied these texts" in page.text
    assert 'id="trace-link"' not in page.text


async def test_another_users_record_and_trace_are_404_like_unknown_ones(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    owner, other = await make_user(), await make_user()
    record_id = await asserted_record(client, owner)
    trace_id = "1" * 32
    await send_trace(client, owner, otlp_trace(trace_id, "m", failed=False))
    await sign_in(client, other)
    for path in (
        f"/console/receipts/{record_id}",
        f"/console/receipts/{record_id}/evidence",
        f"/console/traces/{trace_id}",
        "/console/receipts/00000000-0000-4000-8000-000000000000",
        "/console/receipts/not-a-uuid/evidence",
        "/console/traces/" + "2" * 32,
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert "batchin-evidence" not in response.headers.get("content-disposition", "")
    assert record_id not in (await client.get("/console/receipts")).text
    assert trace_id not in (await client.get("/console/traces")).text


async def test_traces_filter_by_model_and_status_and_draw_the_waterfall(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    ok_trace, failed_trace, other_model = "a" * 32, "b" * 32, "c" * 32
    await send_trace(client, user, otlp_trace(ok_trace, "alpha", failed=False))
    await send_trace(client, user, otlp_trace(failed_trace, "alpha", failed=True))
    await send_trace(client, user, otlp_trace(other_model, "beta", failed=False))
    await sign_in(client, user)
    assert set(trace_rows((await client.get("/console/traces")).text)) == {
        ok_trace,
        failed_trace,
        other_model,
    }
    assert set(trace_rows((await client.get("/console/traces?model=alpha")).text)) == {ok_trace, failed_trace}
    assert trace_rows((await client.get("/console/traces?status=error")).text) == [failed_trace]
    ok_alpha = await client.get("/console/traces?model=alpha&status=ok")
    assert trace_rows(ok_alpha.text) == [ok_trace]
    assert "<option selected>alpha</option>" in ok_alpha.text  # a model outside the catalog stays chosen
    bad = await client.get("/console/traces?status=maybe")
    assert bad.status_code == 400
    assert "status must be" in bad.text

    page = await client.get(f"/console/traces/{failed_trace}")
    bars = re.findall(r'<rect class="wf-span" x="([\d.]+)" width="([\d.]+)"', page.text)
    # The parent spans the whole second; the child starts a quarter in and runs half of it.
    assert bars == [("0.0", "1000.0"), ("250.0", "500.0")]
    assert 'data-status="error"' in page.text
    assert "boom" in page.text
    assert "<code>tool.name</code>" in page.text
    assert "1,000.0 ms" in page.text


async def test_receipts_and_traces_render_in_chinese(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    record_id = await asserted_record(client, user)
    await send_trace(client, user, otlp_trace("d" * 32, "m", failed=False))
    await sign_in(client, user)
    for path, text in (
        ("/console/receipts", "审计回执"),
        (f"/console/receipts/{record_id}", "在浏览器中验签"),
        ("/console/traces", "Trace 列表"),
        ("/console/traces/" + "d" * 32, "Span 瀑布图"),
    ):
        response = await client.get(f"{path}?lang=zh")
        assert response.status_code == 200, path
        assert text in response.text, path


def test_the_receipt_page_loads_the_verify_pages_own_scripts_under_300_kb() -> None:
    console = Path(resources.files("batchin.console"))  # type: ignore[arg-type]
    verify = Path(resources.files("batchin.http_api")) / "static" / "verify"  # type: ignore[arg-type]
    pages = (console / "templates" / "base.html").read_text() + (
        console / "templates" / "receipt.html"
    ).read_text()
    loaded = re.findall(r'(?:src|href)="/(console/static|verify/assets)/([^"]+)"', pages)
    assert ("verify/assets", "verify.js") in loaded  # reused, not copied
    assert not (console / "static" / "verify.js").exists()
    folders = {"console/static": console / "static", "verify/assets": verify}
    assert sum((folders[folder] / name).stat().st_size for folder, name in loaded) < 300 * 1024
