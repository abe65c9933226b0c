"""Webhook deliveries against a real local receiver that verifies signatures with `standardwebhooks`,
on SQLite and PostgreSQL: signing, retries and their bound, recorded attempts, secrets, SSRF at
delivery time, durability across restarts and exactly one sender per attempt with two workers."""

from __future__ import annotations

import asyncio
import stat
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from batchin.config import Settings
from batchin.core.clock import utcnow
from batchin.core.webhooks.service import WebhookService
from batchin.errors import InvalidRequest
from batchin.services import Services
from batchin.store.database import Database
from batchin.store.tables import webhook_deliveries, webhook_secrets
from tests.conftest import MakeUser
from tests.fakes.webhook_receiver import WebhookReceiver

DATA = {"id": "batch_1", "object": "batch", "status": "completed"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Loopback allowed (the receiver runs there); three immediate retries, no jitter."""
    return settings.model_copy(
        update={
            "webhook_allowed_hosts": ["127.0.0.1"],
            "webhook_retry_schedule_seconds": [0.0, 0.0, 0.0],
            "webhook_retry_jitter": 0.0,
            "webhook_timeout_seconds": 5.0,
            "webhook_poll_seconds": 0.05,
            "webhook_concurrency": 4,
        }
    )


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as started:
        yield started


async def user_with_secret(services: Services, make_user: MakeUser, receiver: WebhookReceiver) -> str:
    user = await make_user()
    receiver.secret = await services.webhooks.secret(user.id)
    return user.id


async def drain(*services: WebhookService) -> int:
    """Run the workers' passes until nothing is due; returns the number of attempts made."""
    made = 0
    while True:
        batch = await asyncio.gather(*(s.worker.run_once() for s in services))
        if not any(batch):
            return made
        made += sum(batch)


async def delivery_status(services: Services, subject_id: str) -> list[str]:
    query = select(webhook_deliveries.c.status).where(webhook_deliveries.c.subject_id == subject_id)
    async with services.database.read() as conn:
        return [row.status for row in (await conn.execute(query)).all()]


async def test_an_event_arrives_signed_with_the_users_secret(
    services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    user_id = await user_with_secret(services, make_user, receiver)
    await services.webhooks.enqueue(user_id, "batch.completed", DATA, receiver.url, "batch_1")
    assert await drain(services.webhooks) == 1
    [got] = receiver.received
    assert got.verified
    assert got.path == "/hooks/batchin"
    assert got.headers["content-type"] == "application/json"
    assert got.payload is not None
    assert got.payload["id"] == got.event_id
    assert got.event_id.startswith("msg_")
    assert got.payload["object"] == "event"
    assert got.payload["type"] == "batch.completed"
    assert isinstance(got.payload["created_at"], int)
    assert got.payload["data"] == DATA
    [attempt] = await services.webhooks.attempts_for("batch_1")
    assert attempt["event_id"] == got.event_id
    assert attempt["type"] == "batch.completed"
    assert (attempt["attempt"], attempt["status_code"], attempt["error"]) == (1, 200, None)
    assert attempt["next_retry_at"] is None
    assert attempt["duration_ms"] >= 0
    assert await delivery_status(services, "batch_1") == ["delivered"]


async def test_500s_are_retried_with_the_same_id_and_body_until_success(
    services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    user_id = await user_with_secret(services, make_user, receiver)
    receiver.statuses = [500, 503]
    await services.webhooks.enqueue(user_id, "batch.failed", DATA, receiver.url, "batch_2")
    assert await drain(services.webhooks) == 3
    assert all(r.verified for r in receiver.received)
    assert len({r.event_id for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1
    attempts = await services.webhooks.attempts_for("batch_2")
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 503), (3, 200)]
    assert [a["next_retry_at"] is not None for a in attempts] == [True, True, False]
    assert await delivery_status(services, "batch_2") == ["delivered"]


async def test_delivery_gives_up_when_the_schedule_runs_out(
    services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    user_id = await user_with_secret(services, make_user, receiver)
    receiver.default_status = 500
    await services.webhooks.enqueue(user_id, "batch.expired", DATA, receiver.url, "batch_3")
    assert await drain(services.webhooks) == 4  # the first try and the schedule's three retries
    attempts = await services.webhooks.attempts_for("batch_3")
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert attempts[-1]["next_retry_at"] is None
    assert await delivery_status(services, "batch_3") == ["failed"]
    assert await services.webhooks.worker.run_once() == 0
    assert len(receiver.received) == 4


async def test_a_retry_waits_for_its_turn_in_the_schedule(
    settings: Settings, services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    slow = WebhookService(
        settings.model_copy(update={"webhook_retry_schedule_seconds": [3600.0], "webhook_retry_jitter": 0.1}),
        services.database,
    )
    user_id = await user_with_secret(services, make_user, receiver)
    receiver.default_status = 500
    await slow.enqueue(user_id, "batch.completed", DATA, receiver.url, "batch_4")
    assert await slow.worker.run_once() == 1
    assert await slow.worker.run_once() == 0  # not due for an hour
    [attempt] = await slow.attempts_for("batch_4")
    assert 3240 <= attempt["next_retry_at"] - attempt["attempted_at"] <= 3961  # 1 h ± 10 % jitter
    assert await delivery_status(services, "batch_4") == ["pending"]


async def test_redirects_are_not_followed(
    services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    user_id = await user_with_secret(services, make_user, receiver)
    receiver.statuses = [302]
    await services.webhooks.enqueue(user_id, "batch.completed", DATA, receiver.url, "batch_5")
    assert await services.webhooks.worker.run_once() == 1
    assert [r.path for r in receiver.received] == ["/hooks/batchin"]
    [attempt] = await services.webhooks.attempts_for("batch_5")
    assert attempt["status_code"] == 302
    assert attempt["next_retry_at"] is not None


async def test_enqueueing_one_event_twice_sends_it_once(
    services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    user_id = await user_with_secret(services, make_user, receiver)
    for _ in range(2):
        await services.webhooks.enqueue(user_id, "batch.completed", DATA, receiver.url, "batch_6")
    await services.webhooks.enqueue(user_id, "batch.cancelled", DATA, receiver.url, "batch_6")
    assert await drain(services.webhooks) == 2
    assert sorted(r.payload["type"] for r in receiver.received if r.payload) == [
        "batch.cancelled",
        "batch.completed",
    ]


async def test_a_rotated_secret_signs_from_then_on_and_the_old_one_fails(
    services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    user_id = (await make_user()).id
    old = await services.webhooks.secret(user_id)
    new = await services.webhooks.rotate_secret(user_id)
    assert new != old
    assert new.startswith("whsec_")
    assert await services.webhooks.secret(user_id) == new
    await services.webhooks.enqueue(user_id, "batch.completed", DATA, receiver.url, "batch_7")
    await drain(services.webhooks)
    [got] = receiver.received
    assert receiver.verify(got, new)
    assert not receiver.verify(got, old)


async def test_secrets_are_per_user_stable_and_sealed_at_rest(
    settings: Settings, services: Services, make_user: MakeUser
) -> None:
    first, second = (await make_user()).id, (await make_user()).id
    secret = await services.webhooks.secret(first)
    assert await services.webhooks.secret(first) == secret
    assert await services.webhooks.secret(second) != secret
    async with services.database.read() as conn:
        sealed = [row.sealed for row in (await conn.execute(select(webhook_secrets))).all()]
    assert len(sealed) == 2
    assert not any(secret in s or secret.removeprefix("whsec_") in s for s in sealed)
    key_file = settings.data_dir / "webhooks" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # A restarted server (a new service on the same data dir) reads the same secret back.
    assert await WebhookService(settings, services.database).secret(first) == secret


async def test_concurrent_first_reads_agree_on_one_secret(services: Services, make_user: MakeUser) -> None:
    user_id = (await make_user()).id
    secrets = await asyncio.gather(*(services.webhooks.secret(user_id) for _ in range(8)))
    assert len(set(secrets)) == 1


async def test_a_sealed_secret_moved_to_another_user_does_not_open(
    services: Services, make_user: MakeUser
) -> None:
    victim, thief = (await make_user()).id, (await make_user()).id
    await services.webhooks.secret(victim)
    await services.webhooks.secret(thief)
    async with services.database.write() as conn:
        sealed = (
            await conn.execute(select(webhook_secrets.c.sealed).where(webhook_secrets.c.user_id == victim))
        ).scalar_one()
        await conn.execute(
            update(webhook_secrets).where(webhook_secrets.c.user_id == thief).values(sealed=sealed)
        )
    with pytest.raises(RuntimeError, match="another user"):
        await services.webhooks.secret(thief)


async def test_check_url_lets_allowlisted_loopback_through_only_when_configured(
    settings: Settings, services: Services, receiver: WebhookReceiver
) -> None:
    await services.webhooks.check_url(receiver.url)
    strict = WebhookService(settings.model_copy(update={"webhook_allowed_hosts": []}), services.database)
    with pytest.raises(InvalidRequest) as caught:
        await strict.check_url(receiver.url)
    assert caught.value.param == "webhook_url"
    assert "loopback" in caught.value.message
    with pytest.raises(InvalidRequest):
        await services.webhooks.check_url("http://169.254.169.254/latest/meta-data/")


async def test_an_address_that_turns_private_after_the_check_is_refused_at_delivery(
    settings: Settings, services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])

    async def rebinding_dns(host: str, port: int) -> list[str]:
        return next(answers)

    strict = WebhookService(
        settings.model_copy(update={"webhook_allowed_hosts": [], "webhook_retry_schedule_seconds": []}),
        services.database,
        resolver=rebinding_dns,
    )
    user_id = (await make_user()).id
    url = f"http://rebind.example.com:{receiver.port}/hooks/batchin"
    await strict.check_url(url)  # public at submission
    await strict.enqueue(user_id, "batch.completed", DATA, url, "batch_8")
    assert await strict.worker.run_once() == 1
    [attempt] = await strict.attempts_for("batch_8")
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("refused:")
    assert "127.0.0.1" in attempt["error"]
    assert receiver.received == []


async def test_the_connection_goes_to_the_checked_address(
    settings: Settings, services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    async def dns(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "hooks.test" else []

    pinned = WebhookService(settings, services.database, resolver=dns)
    user_id = await user_with_secret(services, make_user, receiver)
    url = f"http://hooks.test:{receiver.port}/hooks/batchin"  # .test never resolves in real DNS
    await pinned.enqueue(user_id, "batch.completed", DATA, url, "batch_9")
    assert await pinned.worker.run_once() == 1
    [got] = receiver.received
    assert got.verified
    assert got.host == f"hooks.test:{receiver.port}"


async def test_timeouts_and_refused_connections_are_recorded_as_errors(
    settings: Settings, services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    quick = WebhookService(
        settings.model_copy(update={"webhook_timeout_seconds": 0.3, "webhook_retry_schedule_seconds": []}),
        services.database,
    )
    user_id = await user_with_secret(services, make_user, receiver)
    receiver.hang = True
    await quick.enqueue(user_id, "batch.completed", DATA, receiver.url, "batch_10")
    closed_port_url = "http://127.0.0.1:9/hooks"  # discard port: nothing listens there
    await quick.enqueue(user_id, "batch.completed", DATA, closed_port_url, "batch_11")
    assert await quick.worker.run_once() == 2
    [timed_out] = await quick.attempts_for("batch_10")
    assert timed_out["error"] == "timed out after 0.3s"
    [refused] = await quick.attempts_for("batch_11")
    assert refused["error"].startswith("could not connect")
    assert refused["status_code"] is None


async def test_pending_deliveries_survive_a_restart(
    settings: Settings, services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    user_id = await user_with_secret(services, make_user, receiver)
    await services.webhooks.enqueue(user_id, "batch.completed", DATA, receiver.url, "batch_12")
    # Another process (its own engine and worker) starts later and delivers what was left.
    database = Database(settings.resolved_database_url)
    restarted = WebhookService(settings, database)
    try:
        await restarted.start()
        [got] = await receiver.wait_for(1)
        assert got.verified
        assert got.payload is not None
        assert got.payload["type"] == "batch.completed"
    finally:
        await restarted.stop()
        await database.dispose()


async def test_an_attempt_lost_with_its_worker_is_recorded_and_retried(
    services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    user_id = await user_with_secret(services, make_user, receiver)
    await services.webhooks.enqueue(user_id, "batch.completed", DATA, receiver.url, "batch_13")
    # A worker claimed attempt 1 and died: the row is still `sending` and its claim has expired.
    async with services.database.write() as conn:
        await conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.subject_id == "batch_13")
            .values(
                status="sending", attempts=1, worker_id="dead:1:x", next_attempt_at=utcnow() - timedelta(1)
            )
        )
    assert await services.webhooks.worker.run_once() == 1
    attempts = await services.webhooks.attempts_for("batch_13")
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, None), (2, 200)]
    assert "stopped during this attempt" in attempts[0]["error"]
    assert len(receiver.received) == 1


async def test_a_live_claim_is_not_taken_by_another_worker(
    services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    user_id = await user_with_secret(services, make_user, receiver)
    await services.webhooks.enqueue(user_id, "batch.completed", DATA, receiver.url, "batch_14")
    async with services.database.write() as conn:
        await conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.subject_id == "batch_14")
            .values(
                status="sending", attempts=1, worker_id="alive:1:x", next_attempt_at=utcnow() + timedelta(1)
            )
        )
    assert await services.webhooks.worker.run_once() == 0
    assert receiver.received == []


async def test_two_workers_never_send_the_same_attempt(
    settings: Settings, services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    user_id = await user_with_secret(services, make_user, receiver)
    seen: Counter[str] = Counter()

    def first_500_then_200(got: Any) -> int:
        seen[got.event_id] += 1
        return 500 if seen[got.event_id] == 1 else 200

    receiver.respond = first_500_then_200
    events = 30
    for n in range(events):
        await services.webhooks.enqueue(user_id, "batch.completed", {"n": n}, receiver.url, f"batch_m{n}")
    # A second process: its own engine (its own connections) and worker on the same store.
    database = Database(settings.resolved_database_url)
    other = WebhookService(settings, database)
    try:
        made = await drain(services.webhooks, other)
    finally:
        await database.dispose()
    assert made == 2 * events
    assert len(seen) == events
    assert set(seen.values()) == {2}  # one failed try and one success each: never a duplicate
    for n in range(events):
        attempts = await services.webhooks.attempts_for(f"batch_m{n}")
        assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 200)]


async def test_the_app_lifespan_runs_the_worker(
    settings: Settings, services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    from batchin.app import background_work

    user_id = await user_with_secret(services, make_user, receiver)
    async with background_work(services):
        await services.webhooks.enqueue(user_id, "batch.cancelled", DATA, receiver.url, "batch_15")
        [got] = await receiver.wait_for(1)
        async with asyncio.timeout(20):
            while await delivery_status(services, "batch_15") != ["delivered"]:
                await asyncio.sleep(0.02)  # the worker records the 200 just after the receiver answers
    assert got.verified


async def test_a_clean_stop_hands_unfinished_attempts_back(
    settings: Settings, services: Services, make_user: MakeUser, receiver: WebhookReceiver
) -> None:
    user_id = await user_with_secret(services, make_user, receiver)
    receiver.hang = True
    await services.webhooks.start()
    await services.webhooks.enqueue(user_id, "batch.completed", DATA, receiver.url, "batch_16")
    await receiver.wait_for(1)  # the attempt is in flight
    await services.webhooks.stop()
    async with services.database.read() as conn:
        row = (
            await conn.execute(
                select(webhook_deliveries).where(webhook_deliveries.c.subject_id == "batch_16")
            )
        ).one()
    assert (row.status, row.attempts, row.worker_id) == ("pending", 0, None)
    assert await services.webhooks.attempts_for("batch_16") == []
