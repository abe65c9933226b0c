"""A task's derived ids never change between versions: a restarted (or upgraded) worker must find
the reservation and request id an earlier one derived for the same task and attempt. A batch made
with a time-ordered (version 7) id gets ordered derived ids; an older batch keeps its version 5 ids."""

from __future__ import annotations

import uuid

from batchin.core.batches.tasks import ClaimedTask, ordered_ids, reservation_id, task_request_id
from batchin.core.random_ids import uuid7_text

_NAMESPACE = uuid.UUID("5f0c2d1e-8a4b-4c3d-9e2f-b47a6c1d0e93")


def test_an_older_batchs_derived_ids_are_the_uuid5_of_the_task_as_before() -> None:
    assert reservation_id("batch_abc", 7, 2) == "ec19c3e6-075b-5114-8acd-7bd9fe0c1f60"
    assert task_request_id("batch_abc", 41) == "req_bb9f61351b36564e9ff26d19f6b9f91c"
    legacy = str(uuid.UUID("1b4e28ba-2fa1-41d2-883f-0016d3cca427"))  # a version 4 batch id
    for task_id, attempt, batch_id in (
        (1, 1, "batch_x"),
        (10**12, 99, "batch_ünïcode"),
        (0, 0, ""),
        (5, 1, legacy),
    ):
        assert not ordered_ids(batch_id)
        expected = str(uuid.uuid5(_NAMESPACE, f"task:{task_id}:{attempt}"))
        assert reservation_id(batch_id, task_id, attempt) == expected
        assert (
            task_request_id(batch_id, task_id) == "req_" + uuid.uuid5(_NAMESPACE, f"{batch_id}:{task_id}").hex
        )


def test_a_new_batchs_derived_ids_sort_in_task_order_and_stay_derived() -> None:
    batch_id = uuid7_text()
    assert ordered_ids(batch_id)
    reservations = [reservation_id(batch_id, task_id, 1) for task_id in (1, 2, 255, 65_536, 10**9, 2**48 - 1)]
    assert reservations == sorted(reservations)
    for value in reservations:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant, str(parsed)) == (8, uuid.RFC_4122, value)
    attempts = {reservation_id(batch_id, 7, attempt) for attempt in range(1, 200)}
    assert len(attempts) == 199  # every attempt its own reservation
    assert reservation_id(batch_id, 7, 2) == reservation_id(batch_id, 7, 2)  # a restart finds it again
    requests = [task_request_id(batch_id, line) for line in (0, 1, 2, 1000, 4_999_999)]
    assert requests == sorted(requests)
    assert all(len(r) == 36 and set(r[4:]) <= set("0123456789abcdef") for r in requests)
    assert requests[0][4:16] == batch_id[:8] + batch_id[9:13]  # led by the batch's milliseconds
    later = uuid7_text()
    assert task_request_id(later, 0) != task_request_id(batch_id, 0)


def test_a_claimed_row_carries_its_derived_ids() -> None:
    for batch_id in ("batch_b", uuid7_text()):
        row = (12, batch_id, 3, "c-3", "/v1/chat/completions", "m", "{}", 10, 0, 2, 1)
        task = ClaimedTask.from_row(row)
        assert (task.id, task.attempt, task.failures) == (12, 2, 1)
        assert task.request_id == task_request_id(batch_id, 3)
        assert task.reservation_id == reservation_id(batch_id, 12, 2)
