"""One statement per write, run on either write path.

A `Statement` wraps a SQLAlchemy Core statement. Through SQLAlchemy (`execute`: PostgreSQL, or a
SQLite store without a group-commit writer) it runs like any Core statement, compiled once per
dialect by SQLAlchemy's cache. On the SQLite group-commit writer's plain sqlite3 cursor (`run`) it
runs as its SQLite SQL, compiled once on first use, with the bind processing SQLAlchemy would apply
(datetimes in SQLAlchemy's SQLite format, …), so both paths store the same values; the writer keeps
its speed because nothing but that SQL string and the parameters reaches sqlite3.

A `Script` is one operation written once: a generator that yields (statement, parameters), gets back
each statement's outcome (its rowcount and rows) and returns the operation's result. `Transactions`
runs a script in one write transaction: on the group-commit writer when the store has one, else
through SQLAlchemy. A script refuses by raising; its writes are then rolled back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import BindParameter, DateTime, bindparam
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from batchin.store.database import Database
from batchin.store.group_commit import GroupCommitWriter, Operation
from batchin.store.named_writes import Write

__all__ = [
    "Outcome",
    "Params",
    "Script",
    "Statement",
    "Transactions",
    "bound",
    "execute_script",
    "run_script",
]

T = TypeVar("T")
Params = Mapping[str, Any]
_SQLITE = sqlite.dialect(paramstyle="qmark")


class Outcome(Protocol):
    """What a script gets back for a statement: a sqlite3 cursor or a SQLAlchemy result."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> Sequence[Any]: ...


Step = tuple["Statement", Params | list[dict[str, Any]]]  # a list of parameter sets: executemany
Script = Generator[Step, Outcome, T]


def _literals(compiler: SQLCompiler) -> dict[str, Any]:
    """The values a statement carries itself (literals in the Core statement), by parameter name."""
    return {name: value for name, value in compiler.params.items() if not compiler.binds[name].required}


def _processor(bind_type: Any) -> Callable[[Any], Any] | None:
    """SQLAlchemy's bind processing of a type on SQLite (None when values pass unchanged)."""
    process: Callable[[Any], Any] | None = bind_type.dialect_impl(_SQLITE).bind_processor(_SQLITE)
    if process is not None and isinstance(bind_type, DateTime):
        return _fast_datetime(process)
    return process


class _Compiled:
    """A statement's SQLite SQL with `?` placeholders and how to turn a parameter mapping into the
    positional tuple sqlite3 binds fastest: the values in placeholder order (a name used twice comes
    twice), the statement's own literals filled in, SQLAlchemy's bind processing applied."""

    __slots__ = ("_fixed", "_get", "_processors", "sql")

    def __init__(self, compiler: SQLCompiler) -> None:
        names = tuple(compiler.positiontup or ())
        self.sql = compiler.string
        fixed = _literals(compiler)  # processed once, here
        processors: list[tuple[int, Callable[[Any], Any]]] = []
        for position, name in enumerate(names):
            process = _processor(compiler.binds[name].type)
            if process is None:
                continue
            if name in fixed:
                fixed[name] = process(fixed[name])
            else:
                processors.append((position, process))
        self._fixed = fixed
        self._processors = tuple(processors)
        if len(names) == 1:
            only = names[0]
            self._get: Callable[[Params], Sequence[Any]] = lambda params: (params[only],)
        elif names:
            self._get = itemgetter(*names)
        else:
            self._get = lambda _params: ()

    def bind(self, params: Params) -> Sequence[Any]:
        if self._fixed:
            params = {**self._fixed, **params}
        values = self._get(params)
        if not self._processors:
            return values
        listed = list(values)
        for position, process in self._processors:
            listed[position] = process(listed[position])
        return listed

    def __call__(self, cur: sqlite3.Cursor, params: Params | list[dict[str, Any]]) -> Outcome:
        if isinstance(params, list):  # not an ABC check: this is the writer's hot path
            return cur.executemany(self.sql, [self.bind(one) for one in params])
        return cur.execute(self.sql, self.bind(params))


class _Expanding:
    """A statement with an expanding IN (a list parameter): rendered per call by SQLAlchemy, with
    the statement's own literals and SQLAlchemy's bind processing applied by name first."""

    __slots__ = ("_compiler", "_fixed", "_processors")

    def __init__(self, compiler: SQLCompiler) -> None:
        self._compiler = compiler
        self._fixed = _literals(compiler)
        self._processors = tuple(
            (name, process)
            for name, bind in compiler.binds.items()
            if not bind.expanding and (process := _processor(bind.type)) is not None
        )

    def __call__(self, cur: sqlite3.Cursor, params: Params | list[dict[str, Any]]) -> Outcome:
        if isinstance(params, list):
            raise TypeError("an expanding statement runs with one parameter set")
        bound = {**self._fixed, **params}
        for name, process in self._processors:
            bound[name] = process(bound[name])
        expanded = self._compiler.construct_expanded_state(bound)
        return cur.execute(
            expanded.statement, [expanded.parameters[name] for name in expanded.positiontup or ()]
        )


class Statement:
    __slots__ = ("_sqlite", "clause")

    def __init__(self, clause: Executable) -> None:
        self.clause = clause
        self._sqlite: _Compiled | _Expanding | None = None

    async def execute(self, conn: AsyncConnection, params: Params | list[dict[str, Any]]) -> Outcome:
        return await conn.execute(self.clause, params)

    def run(self, cur: sqlite3.Cursor, params: Params | list[dict[str, Any]]) -> Outcome:
        return (self._sqlite or self._compile())(cur, params)

    def _compile(self) -> _Compiled | _Expanding:
        compiler = cast(SQLCompiler, cast(ClauseElement, self.clause).compile(dialect=_SQLITE))
        self._sqlite = _Expanding(compiler) if compiler.post_compile_params else _Compiled(compiler)
        return self._sqlite


# The last datetime formatted for SQLite and its text, shared by every statement's datetime
# parameters: one write's rows share a timestamp (a reservation's created_at and renewed_at, a
# settlement's closed_at and usage log, an audit batch's records), so it is formatted once, not once
# per column or statement. One tuple, swapped whole: safe across the loop and the writer thread.
_last_formatted: list[tuple[object, str]] = [(object(), "")]


def _fast_datetime(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLAlchemy's SQLite DateTime format ("YYYY-MM-DD HH:MM:SS.ffffff", the zone dropped) from
    datetime's own C formatter, a third of the cost of SQLAlchemy's %-formatting; the last value is
    remembered (`_last_formatted`). Anything but a datetime goes to SQLAlchemy's processor."""
    last = _last_formatted

    def formatted(value: Any) -> Any:
        seen, text = last[0]
        if seen is value:
            return text
        if type(value) is not datetime:
            return process(value)
        text = value.isoformat(" ", "microseconds")[:26]
        last[0] = (value, text)
        return text

    return formatted


def bound(*columns: str) -> dict[str, BindParameter[Any]]:
    """`.values(**bound("a", "b"))`: each column set from the parameter of its name."""
    return {name: bindparam(name) for name in columns}


def run_script(cur: sqlite3.Cursor, script: Script[T]) -> T:
    """Drive `script` on the group-commit writer's cursor (inside the writer's transaction)."""
    try:
        statement, params = next(script)
        while True:
            statement, params = script.send(statement.run(cur, params))
    except StopIteration as done:
        return cast(T, done.value)


async def execute_script(conn: AsyncConnection, script: Script[T]) -> T:
    """Drive `script` in a SQLAlchemy transaction."""
    try:
        statement, params = next(script)
        while True:
            statement, params = script.send(await statement.execute(conn, params))
    except StopIteration as done:
        return cast(T, done.value)


class Transactions:
    """Runs each script in a write transaction of its own: as one operation of the group-commit
    writer when there is one (batched with its neighbours, its own savepoint), else through
    SQLAlchemy. A `Write` (a registered operation by name: named_writes.py) is for the writer
    only; it is what may be run by another process's writer (write_relay.py)."""

    def __init__(self, database: Database, writer: GroupCommitWriter | None, *, urgent: bool = False) -> None:
        """`urgent`: these are a call's small writes that its answer waits for (the writer may
        commit them on the event loop: GroupCommitWriter.submit)."""
        self._db = database
        self._writer = writer
        self._urgent = urgent

    async def run(self, script: Script[T] | Write, *, urgent: bool | None = None) -> T:
        """`urgent`: this write's own urgency, when it is not the object's (a bulk write of an
        urgent writer's domain: False)."""
        if self._writer is not None:
            urgency = self._urgent if urgent is None else urgent
            return cast(T, await self._writer.run(_operation(script), urgent=urgency))
        return await self._through_sqlalchemy(_script(script))

    async def run_to_end(self, script: Script[T] | Write) -> T:
        """`run`, except that a cancelled caller never tears the transaction: it still commits
        (or refuses) as if the caller were there. What is queued on the writer runs anyway."""
        if self._writer is not None:
            return await self.run(script)
        return await asyncio.shield(self.start(script))

    def start(self, script: Script[T] | Write, *, urgent: bool | None = None) -> asyncio.Future[T]:
        """Start `script`, which then runs to its end whatever becomes of the caller: await it
        through `asyncio.shield` to learn its outcome even after a cancellation. (On the writer it
        is already queued, so this costs no task.) `urgent`: as for `run`."""
        if self._writer is not None:
            urgency = self._urgent if urgent is None else urgent
            return cast("asyncio.Future[T]", self._writer.submit(_operation(script), urgent=urgency))
        return asyncio.ensure_future(self._through_sqlalchemy(_script(script)))

    async def _through_sqlalchemy(self, script: Script[T]) -> T:
        async with self._db.write() as conn:
            return await execute_script(conn, script)


def _operation(script: Script[Any] | Write) -> Operation:
    if isinstance(script, Write):
        return script
    return lambda cur: run_script(cur, script)


def _script(script: Script[T] | Write) -> Script[T]:
    if isinstance(script, Write):
        raise TypeError(f"{script!r} runs on a SQLite group-commit writer only")
    return script
