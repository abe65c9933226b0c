"""A task's derived ids never change between versions: a restarted (or upgraded) worker must find
the reservation and request id an earlier one derived for the same task and attempt."""

from __future__ import annotations

import uuid

from batchin.core.batches.tasks import ClaimedTask, reservation_id, task_request_id

_NAMESPACE = uuid.UUID("5f0c2d1e-8a4b-4c3d-9e2f-b47a6c1d0e93")


def test_derived_ids_are_the_uuid5_of_the_task_as_before() -> None:
    assert reservation_id(7, 2) == "ec19c3e6-075b-5114-8acd-7bd9fe0c1f60"
    assert task_request_id("batch_abc", 41) == "req_bb9f61351b36564e9ff26d19f6b9f91c"
    for task_id, attempt, batch_id in ((1, 1, "batch_x"), (10**12, 99, "batch_ünïcode"), (0, 0, "")):
        assert reservation_id(task_id, attempt) == str(uuid.uuid5(_NAMESPACE, f"task:{task_id}:{attempt}"))
        assert (
            task_request_id(batch_id, task_id) == "req_" + uuid.uuid5(_NAMESPACE, f"{batch_id}:{task_id}").hex
        )


def test_a_claimed_row_carries_its_derived_ids() -> None:
    row = (12, "batch_b", 3, "c-3", "/v1/chat/completions", "m", "{}", 10, 0, 2, 1)
    task = ClaimedTask.from_row(row)
    assert (task.id, task.attempt, task.failures) == (12, 2, 1)
    assert task.request_id == task_request_id("batch_b", 3)
    assert task.reservation_id == reservation_id(12, 2)
