"""Write operations by name: what one process can ask another's group-commit writer to run.

A group-commit operation is a function of the writer's cursor (batchin/store/group_commit.py); a
closure cannot leave its process. A domain registers the writes other processes may send with
`named_write`: the function stays where it is, and a `Write` names it ("module:qualname") with its
arguments (plain data: rows, dataclasses, datetimes). Locally a `Write` is an operation like any
other; across processes (batchin/store/write_relay.py) only the name and arguments travel, and the
receiving writer runs only functions registered under that name: no code crosses.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Callable
from typing import Any

__all__ = ["NamedWrite", "Write", "named_write", "resolve_write"]

_REGISTERED: dict[str, Callable[..., Any]] = {}


class Write:
    """A registered write and its arguments: `write(cursor)` runs it in the writer's transaction."""

    __slots__ = ("args", "name")

    def __init__(self, name: str, args: tuple[Any, ...]) -> None:
        self.name = name
        self.args = args

    def __call__(self, cur: sqlite3.Cursor) -> Any:
        return _REGISTERED[self.name](cur, *self.args)

    def __repr__(self) -> str:
        return f"Write({self.name!r})"


class NamedWrite:
    """What `named_write` returns: called with the function's arguments (after the cursor), it
    makes the `Write` that runs it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any) -> Write:
        return Write(self.name, args)


def named_write(function: Callable[..., Any]) -> NamedWrite:
    """Register `function(cursor, *args)` (a module-level function) under its module and name."""
    name = f"{function.__module__}:{function.__qualname__}"
    known = _REGISTERED.setdefault(name, function)
    if known is not function:
        raise ValueError(f"two write operations named {name}")
    return NamedWrite(name)


def resolve_write(name: str) -> None:
    """Make sure `name` is a registered write, importing its module (one of ours) the first time a
    process meets it; LookupError for anything else."""
    if name in _REGISTERED:
        return
    module = name.partition(":")[0]
    if module.split(".")[0] != "batchin":
        raise LookupError(f"{name!r} is not a registered write operation")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise LookupError(f"{name!r} is not a registered write operation") from exc
    if name not in _REGISTERED:
        raise LookupError(f"{name!r} is not a registered write operation")
