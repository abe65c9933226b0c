"""`until_disconnect` runs the work in the caller's task with one watcher: a disconnect becomes
ClientDisconnected (the work cancelled and finished first), any other cancel stays a cancel, and a
call that ends normally leaves its task with no cancel pending. Plain ASGI messages, no server: the
served behaviour is in test_disconnects.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from batchin.http_api.streaming import ClientDisconnected, until_disconnect


def _request(disconnect: asyncio.Event) -> Request:
    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "headers": [], "path": "/"}, receive)


async def test_work_that_ends_returns_its_answer_and_leaves_no_cancel_pending() -> None:
    async def work() -> str:
        await asyncio.sleep(0)
        return "answer"

    assert await until_disconnect(_request(asyncio.Event()), work()) == "answer"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_a_disconnect_cancels_the_work_lets_it_clean_up_and_raises_client_disconnected() -> None:
    disconnect, cleaned = asyncio.Event(), []

    async def work() -> str:
        try:
            disconnect.set()
            await asyncio.sleep(10)
            return "never"
        finally:
            await asyncio.sleep(0)  # cleanup that awaits still runs to its end
            cleaned.append(True)

    async def call() -> int:
        with pytest.raises(ClientDisconnected):
            await until_disconnect(_request(disconnect), work())
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert await asyncio.wait_for(call(), 5) == 0
    assert cleaned == [True]


async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.ensure_future(until_disconnect(_request(asyncio.Event()), work()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("disconnect_first", [True, False])
async def test_a_disconnect_in_the_same_loop_pass_as_the_answer_leaves_no_cancel_pending(
    disconnect_first: bool,
) -> None:
    """The work's last wait and the disconnect end in one pass of the loop, in either order: the
    call ends with the answer or with ClientDisconnected, and the caller's later awaits are not
    cancelled (a cancel left pending would hit the next one)."""
    disconnect = asyncio.Event()
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def work() -> str:
        await asyncio.sleep(0)  # the watcher is waiting for the disconnect from here on
        asyncio.get_running_loop().call_soon(both)
        return await answer

    def both() -> None:  # one callback: neither side can run in between
        if disconnect_first:
            disconnect.set()
            answer.set_result("answer")
        else:
            answer.set_result("answer")
            disconnect.set()

    async def call() -> str:
        try:
            outcome = await until_disconnect(_request(disconnect), work())
        except ClientDisconnected:
            outcome = "gone"
        for _ in range(3):
            await asyncio.sleep(0)  # a pending cancel would raise here
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0
        return outcome

    # whichever wait ended first decides: the caller left, or the answer stands
    assert await asyncio.wait_for(call(), 5) == ("gone" if disconnect_first else "answer")


async def test_a_handed_watch_outlives_the_work_and_takes_a_later_action() -> None:
    from batchin.http_api.disconnect import DisconnectWatch

    disconnect = asyncio.Event()
    request = _request(disconnect)
    watch = DisconnectWatch(request.receive)

    async def work() -> str:
        await asyncio.sleep(0)
        return "answer"

    assert await until_disconnect(request, work(), watch=watch) == "answer"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    assert not watch.task.done()  # still watching, for the response it is handed to
    stopped: list[bool] = []
    watch.then(lambda: stopped.append(True))
    disconnect.set()
    await asyncio.wait_for(watch.task, 5)
    assert (watch.gone, stopped, task.cancelling()) == (True, [True], 0)


async def test_a_handed_watch_turns_a_disconnect_during_the_work_into_client_disconnected() -> None:
    from batchin.http_api.disconnect import DisconnectWatch

    disconnect = asyncio.Event()
    request = _request(disconnect)
    watch = DisconnectWatch(request.receive)

    async def work() -> str:
        disconnect.set()
        await asyncio.sleep(10)
        return "never"

    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(until_disconnect(request, work(), watch=watch), 5)
    assert watch.gone
