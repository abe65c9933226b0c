"""OpenAI's file form through the core: a JSONL upload is checked line by line before anything
runs (every bad line reported, none dropped), then run; results come back as JSONL files."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from sqlalchemy import update

from batchin.config import Settings
from batchin.core.batches.input import MAX_LISTED_ERRORS
from batchin.errors import InvalidRequest, NotFound
from batchin.protocol.accounts import UserCreated
from batchin.protocol.batches import BatchCreateRequest
from batchin.protocol.files import FileObject
from batchin.services import Services
from batchin.store.tables import batches
from tests.batch_fixtures import (
    CHAT,
    TASK_COST,
    TEXT,
    WIDE,
    batch_services,
    caller,
    jsonl_line,
    task_rows,
    usage_of,
    wait_for,
)
from tests.conftest import MakeUser
from tests.text_fixtures import balance_units, runner_of


async def upload(
    services: Services, user: UserCreated, lines: list[Any], purpose: str = "batch"
) -> FileObject:
    data = b"".join(line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n" for line in lines)
    return await services.files.store_stream(
        user.id,
        io.BytesIO(data),
        filename="in.jsonl",
        purpose=purpose,
        content_type="application/jsonl",
        max_bytes=10**9,
    )


async def submit_file(
    services: Services, user: UserCreated, file_id: str, endpoint: str = "/v1/chat/completions"
) -> Any:
    request = BatchCreateRequest(input_file_id=file_id, endpoint=endpoint)  # type: ignore[arg-type]
    return await services.batches.submit(await caller(services, user), request)


async def read_jsonl(services: Services, user: UserCreated, file_id: str) -> list[dict[str, Any]]:
    content = await services.files.content(user.id, file_id)
    return [json.loads(line) for line in content.path.read_text().splitlines()]


async def test_a_file_batch_is_validated_then_every_line_runs_once(
    services: Services, user: UserCreated
) -> None:
    before = await balance_units(services, user)
    stored = await upload(services, user, [jsonl_line(f"req-{i}") for i in range(5)])

    submitted = await submit_file(services, user, stored.id)
    done = await wait_for(services, user, submitted.id)

    assert submitted.status == "validating"
    assert (submitted.input_file_id, submitted.endpoint) == (stored.id, "/v1/chat/completions")
    assert (done.status, done.total_tasks, done.completed_tasks, done.failed_tasks) == ("completed", 5, 5, 0)
    assert done.tasks is None  # a file batch's tasks are paged, not inlined
    assert done.error_file_id is None
    assert done.output_file_id is not None
    output = await read_jsonl(services, user, done.output_file_id)
    assert [line["custom_id"] for line in output] == [f"req-{i}" for i in range(5)]
    first = output[0]
    assert set(first) == {"id", "custom_id", "response", "error"}
    assert first["id"].startswith("batch_req_")
    assert first["error"] is None
    assert first["response"]["status_code"] == 200
    assert first["response"]["request_id"] == "req_" + first["id"].removeprefix("batch_req_")
    assert first["response"]["body"]["choices"][0]["message"]["content"] == TEXT
    logs = await usage_of(services, user)
    assert sorted(log.request_id for log in logs) == sorted(line["response"]["request_id"] for line in output)
    assert before - await balance_units(services, user) == 5 * TASK_COST


async def test_every_bad_line_is_reported_and_nothing_runs(services: Services, user: UserCreated) -> None:
    lines: list[Any] = [
        jsonl_line("ok"),
        b"{not json\n",
        jsonl_line("", CHAT),
        jsonl_line("get", method="GET"),
        jsonl_line("elsewhere", url="/v1/embeddings"),
        jsonl_line("unknown", "no-such-model"),
        {"custom_id": "no-model", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}},
        b"\n",  # blank lines carry no request
        jsonl_line("ok"),
        jsonl_line("streamed"),
    ]
    lines[-1]["body"]["stream"] = True
    stored = await upload(services, user, lines)

    done = await wait_for(services, user, (await submit_file(services, user, stored.id)).id)

    assert done.status == "failed"
    assert done.failed_at is not None
    assert done.errors is not None
    assert [(e.line, e.code, e.param) for e in done.errors.data] == [
        (2, "invalid_json_line", None),
        (3, "missing_custom_id", "custom_id"),
        (4, "invalid_method", "method"),
        (5, "mismatched_url", "url"),
        (6, "model_not_found", "body.model"),
        (7, "missing_model", "body.model"),
        (9, "duplicate_custom_id", "custom_id"),
        (10, "invalid_body", "body.stream"),
    ]
    assert await task_rows(services, done.id) == []
    assert await usage_of(services, user) == []
    assert (await runner_of(services, CHAT)).calls == []


async def test_a_model_that_does_not_serve_the_endpoint_is_a_line_error(
    services: Services, user: UserCreated
) -> None:
    line = jsonl_line("x", WIDE, url="/v1/completions")
    line["body"] = {"model": WIDE, "prompt": "hi"}
    stored = await upload(services, user, [line])

    done = await wait_for(
        services, user, (await submit_file(services, user, stored.id, "/v1/completions")).id
    )

    assert done.errors is not None
    assert [(e.line, e.code) for e in done.errors.data] == [(1, "model_not_supported")]


async def test_errors_past_the_listed_limit_are_counted_not_dropped(
    services: Services, user: UserCreated
) -> None:
    stored = await upload(services, user, [b"nope\n"] * (MAX_LISTED_ERRORS + 3))

    done = await wait_for(services, user, (await submit_file(services, user, stored.id)).id)

    assert done.errors is not None
    assert len(done.errors.data) == MAX_LISTED_ERRORS + 1
    summary = done.errors.data[-1]
    assert (summary.code, summary.message) == ("too_many_errors", "3 more lines have errors (not listed).")


async def test_an_empty_file_fails_the_batch(services: Services, user: UserCreated) -> None:
    stored = await upload(services, user, [b"\n"])

    done = await wait_for(services, user, (await submit_file(services, user, stored.id)).id)

    assert done.errors is not None
    assert [e.code for e in done.errors.data] == ["empty_file"]


async def test_the_input_must_be_the_callers_batch_upload(
    services: Services, user: UserCreated, make_user: MakeUser
) -> None:
    wrong_purpose = await upload(services, user, [jsonl_line("x")], purpose="user_data")
    with pytest.raises(InvalidRequest) as refused:
        await submit_file(services, user, wrong_purpose.id)
    assert refused.value.param == "input_file_id"

    someone_elses = await upload(services, await make_user(), [jsonl_line("x")])
    with pytest.raises(NotFound) as missing:
        await submit_file(services, user, someone_elses.id)
    assert missing.value.param == "input_file_id"


async def test_tasks_are_paged_in_input_order(services: Services, user: UserCreated) -> None:
    stored = await upload(services, user, [jsonl_line(f"req-{i}") for i in range(5)])
    done = await wait_for(services, user, (await submit_file(services, user, stored.id)).id)

    first = await services.batches.tasks(user.id, done.id, limit=3)
    rest = await services.batches.tasks(user.id, done.id, after=first.last_line or 0, limit=3)

    assert [t.custom_id for t in first.data] == ["req-0", "req-1", "req-2"]
    assert first.has_more
    assert [t.custom_id for t in rest.data] == ["req-3", "req-4"]
    assert not rest.has_more
    assert rest.data[0].result is not None


async def test_loading_resumes_after_the_loader_died(settings: Settings) -> None:
    async with batch_services(settings, start=False) as services:
        user = await services.accounts.create_user("loader@example.com", "L", 100)
        stored = await upload(services, user, [jsonl_line(f"req-{i}") for i in range(7)])
        batch = await submit_file(services, user, stored.id)
        body = json.dumps(jsonl_line("x")["body"])
        rows = [
            (batch.id, i, f"req-{i}", "/v1/chat/completions", CHAT, body, 2, "pending", 0, 0, 0)
            for i in range(3)
        ]
        await services.batches._store.insert(rows)  # the dead loader had stored three lines...
        async with services.database.write() as conn:  # ...and held the batch
            await conn.execute(
                update(batches)
                .where(batches.c.id == batch.id)
                .values(status="in_progress", total_tasks=7, claimed_by="other-host:1:dead", lease_until=0)
            )
        await services.batches.start()

        done = await wait_for(services, user, batch.id)

        assert (done.status, done.completed_tasks) == ("completed", 7)
        assert [row.line for row in await task_rows(services, batch.id)] == list(range(7))
        assert len((await runner_of(services, CHAT)).calls) == 7
