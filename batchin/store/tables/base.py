"""The one MetaData every table registers on, and the column types they share."""

from __future__ import annotations

from sqlalchemy import (
    DateTime,
    MetaData,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

UUID_LEN = 36
TS = DateTime(timezone=True)
