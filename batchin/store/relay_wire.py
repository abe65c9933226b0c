"""The write relay's wire: how writes and their outcomes cross between API processes and the writer.

Messages are pickled tuples of plain data on a multiprocessing Connection (write_relay.py says who
sends what): `encode` pickles with a lean pickler, `receive` reads one message, `sendable` makes an
outcome's exception safe to send, `reply` sends outcomes even when one of them does not pickle.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["Outcome", "Sent", "encode", "receive", "reply", "sendable"]

Outcome = tuple[int, bool, Any]  # (seq, ok, value or exception)
Sent = list[tuple[int, str, tuple[Any, ...]]]  # one message of writes: (seq, name, args)


class _Pickler(pickle.Pickler):
    """The wire's pickling, several times cheaper than `Connection.send`'s for what writes carry:
    that one copies copyreg's dispatch table per message (~27 µs), a slots dataclass pickles its
    state through Python (~10 µs each: a reservation, a usage record) and an aware datetime through
    its time zone's reduction (~13 µs). Here a dataclass of ours travels as its class and field
    values (rebuilt by its constructor), a UTC datetime as a naive one."""

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is datetime:
            if obj.tzinfo is UTC:
                return _utc, (obj.replace(tzinfo=None),)
            return NotImplemented
        names = _init_fields(kind)
        if names is None:
            return NotImplemented
        return kind, tuple([getattr(obj, name) for name in names])


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _init_fields(kind: type) -> tuple[str, ...] | None:
    """The fields that rebuild an instance of `kind` through its constructor, in its order: for our
    own dataclasses whose fields all come from `__init__`; None for anything else."""
    try:
        return _FIELDS[kind]
    except KeyError:
        pass
    names = None
    if kind.__module__.startswith("batchin.") and dataclasses.is_dataclass(kind):
        fields = dataclasses.fields(kind)
        if all(field.init for field in fields):
            names = tuple(field.name for field in fields)
    _FIELDS[kind] = names
    return names


def _utc(naive: datetime) -> datetime:
    return naive.replace(tzinfo=UTC)


def encode(message: object) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    return buffer.getvalue()


def receive(conn: Connection) -> Any:
    return pickle.loads(conn.recv_bytes())  # noqa: S301 - a peer that proved it holds the key


def sendable(error: BaseException) -> BaseException:
    """An outcome's exception as it can cross: itself when it pickles back (our errors, sqlite3's,
    a refused settlement), else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, just made
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def reply(conn: Connection, outcomes: list[Outcome]) -> None:
    try:
        conn.send_bytes(encode(outcomes))
    except (OSError, ValueError):  # its process is gone (the reader sees the end too)
        return
    except Exception:  # a result that does not pickle: each alone, the culprit as an error
        for seq, ok, value in outcomes:
            try:
                conn.send_bytes(encode([(seq, ok, value)]))
            except (OSError, ValueError):
                return
            except Exception as error:
                conn.send_bytes(encode([(seq, False, RuntimeError(f"unsendable result: {error}"))]))
