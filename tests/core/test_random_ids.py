"""Random ids from the pooled CSPRNG read: the shape of secrets.token_hex, never handed out twice,
and a forked child that does not repeat its parent's pool."""

from __future__ import annotations

import os
import threading
import time
import uuid

from batchin.core import random_ids
from batchin.core.random_ids import time_ordered_hex, token_hex, uuid4_text, uuid7_text


def test_ids_are_lowercase_hex_of_twice_the_bytes_asked() -> None:
    for nbytes in (8, 12, 16, 5000):  # 5000: more than one pooled read at once
        value = token_hex(nbytes)
        assert len(value) == 2 * nbytes
        assert set(value) <= set("0123456789abcdef")


def test_uuids_are_version_4_in_their_text_form() -> None:
    text = uuid4_text()
    parsed = uuid.UUID(text)
    assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    assert uuid4_text() != text


def test_no_id_repeats_across_many_pool_refills() -> None:
    ids = [token_hex(16) for _ in range(10 * random_ids._READ // 16)]
    assert len(set(ids)) == len(ids)


def test_a_forked_child_draws_fresh_bytes() -> None:
    token_hex(8)  # the parent's pool holds unused bytes now
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(writer, token_hex(16).encode())
        os._exit(0)
    os.close(writer)
    child = os.read(reader, 64).decode()
    os.close(reader)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != token_hex(16)


def test_time_ordered_ids_lead_with_the_milliseconds_and_sort_by_time() -> None:
    before = time.time_ns() // 1_000_000
    text = uuid7_text()
    parsed = uuid.UUID(text)
    assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, text)
    trace_id = time_ordered_hex(16)
    after = time.time_ns() // 1_000_000
    assert before <= int(parsed.hex[:12], 16) <= after
    assert len(trace_id) == 32
    assert before <= int(trace_id[:12], 16) <= after
    assert len({uuid7_text() for _ in range(1000)}) == 1000  # the random rest tells ids of one ms apart


def test_threads_sharing_the_pool_never_get_the_same_bytes() -> None:
    taken: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        for _ in range(20 * random_ids._READ // 16):
            into.append(token_hex(16))

    threads = [threading.Thread(target=draw, args=(into,)) for into in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [value for into in taken for value in into]
    assert len(set(ids)) == len(ids)
