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

import sqlite3
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import BindParameter, DateTime, bindparam
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from batchin.store.database import Database
from batchin.store.group_commit import GroupCommitWriter

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
_SQLITE = sqlite.dialect(paramstyle="named")


class Outcome(Protocol):
    """What a script gets back for a statement: a sqlite3 cursor or a SQLAlchemy result."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> Sequence[Any]: ...


Step = tuple["Statement", Params | list[dict[str, Any]]]  # a list of parameter sets: executemany
Script = Generator[Step, Outcome, T]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    fixed: dict[str, Any]  # values the statement carries itself (literals in the Core statement)
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    compiler: SQLCompiler | None  # kept only when an expanding IN needs the parameters to render

    def bind(self, params: Params) -> Params:
        if not self.fixed and not self.processors:
            return params
        bound = {**self.fixed, **params}
        for name, process in self.processors:
            bound[name] = process(bound[name])
        return bound


class Statement:
    __slots__ = ("_sqlite", "clause")

    def __init__(self, clause: Executable) -> None:
        self.clause = clause
        self._sqlite: _Compiled | None = None

    async def execute(self, conn: AsyncConnection, params: Params | list[dict[str, Any]]) -> Outcome:
        return await conn.execute(self.clause, params)

    def run(self, cur: sqlite3.Cursor, params: Params | list[dict[str, Any]]) -> Outcome:
        compiled = self._sqlite or self._compile()
        if isinstance(params, list):  # not an ABC check: this is the writer's hot path
            return cur.executemany(compiled.sql, [compiled.bind(one) for one in params])
        if compiled.compiler is None:
            return cur.execute(compiled.sql, compiled.bind(params))
        expanded = compiled.compiler.construct_expanded_state(compiled.bind(params))
        return cur.execute(expanded.statement, expanded.parameters)

    def _compile(self) -> _Compiled:
        compiler = cast(SQLCompiler, cast(ClauseElement, self.clause).compile(dialect=_SQLITE))
        processors = tuple(
            (name, _remember_last(process) if isinstance(bind.type, DateTime) else process)
            for name, bind in compiler.binds.items()
            if (process := bind.type.dialect_impl(_SQLITE).bind_processor(_SQLITE)) is not None
        )
        fixed = {name: value for name, value in compiler.params.items() if not compiler.binds[name].required}
        expanding = compiler if compiler.post_compile_params else None
        self._sqlite = _Compiled(compiler.string, fixed, processors, expanding)
        return self._sqlite


def _remember_last(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A datetime's `process`, reusing its last result for the very same (immutable) value: the rows
    of one write share one timestamp (the records of an audit batch, a settlement's close and usage
    log), and formatting a datetime costs more than the rest of binding a row."""
    last: list[tuple[Any, Any]] = [(object(), None)]  # one tuple, swapped whole: safe across writers

    def remembered(value: Any) -> Any:
        seen, result = last[0]
        if seen is value:
            return result
        result = process(value)
        last[0] = (value, result)
        return result

    return remembered


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
    SQLAlchemy."""

    def __init__(self, database: Database, writer: GroupCommitWriter | None) -> None:
        self._db = database
        self._writer = writer

    async def run(self, script: Script[T]) -> T:
        if self._writer is not None:
            return cast(T, await self._writer.run(lambda cur: run_script(cur, script)))
        async with self._db.write() as conn:
            return await execute_script(conn, script)
