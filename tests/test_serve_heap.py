"""`batchin serve` keeps the cyclic garbage collector off its start-up heap (app.freeze_startup_heap)."""

from __future__ import annotations

import gc

from batchin.app import freeze_startup_heap


def test_the_start_up_heap_is_frozen_and_young_objects_are_collected_less_often() -> None:
    threshold = gc.get_threshold()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 10_000  # modules, schemas, settings: all of start-up
        assert gc.get_threshold()[0] > threshold[0]
    finally:  # this test process goes on collecting as before
        gc.unfreeze()
        gc.set_threshold(*threshold)
