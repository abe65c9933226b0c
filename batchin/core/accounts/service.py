"""Users and their API keys. Any id that is not the caller's answers 404, never 403."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from batchin.core.accounts.auth import AuthService
from batchin.core.accounts.keys import display_prefix, generate_secret, hash_secret
from batchin.core.billing.money import cents_to_units, units_to_cents
from batchin.core.clock import isoformat, utcnow
from batchin.errors import InvalidRequest, NotFound
from batchin.protocol.accounts import KeyCreated, KeyCreateRequest, KeyResponse, UserCreated, UserResponse
from batchin.store.database import Database
from batchin.store.tables import api_keys, topups, users


def _valid_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class AccountService:
    def __init__(self, database: Database, auth: AuthService, *, default_rpm: int) -> None:
        self._db = database
        self._auth = auth
        self._default_rpm = default_rpm

    async def create_user(self, email: str, name: str, credit_cents: int) -> UserCreated:
        email = email.strip()
        if "@" not in email or len(email) > 320:
            raise InvalidRequest(f"'{email}' is not an email address.", param="email")
        if credit_cents < 0:
            raise InvalidRequest("credit_cents must be zero or more.", param="credit_cents")
        now = utcnow()
        user_id = str(uuid.uuid4())
        secret = generate_secret()
        key_id = str(uuid.uuid4())
        try:
            async with self._db.write() as conn:
                await conn.execute(
                    users.insert().values(
                        id=user_id,
                        email=email,
                        name=name,
                        balance_units=cents_to_units(credit_cents),
                        created_at=now,
                    )
                )
                if credit_cents:
                    await conn.execute(
                        topups.insert().values(
                            id=str(uuid.uuid4()),
                            user_id=user_id,
                            amount_cents=credit_cents,
                            source="admin",
                            reference_id=f"initial:{user_id}",
                            status="completed",
                            created_at=now,
                            completed_at=now,
                        )
                    )
                await conn.execute(
                    api_keys.insert().values(**self._key_row(key_id, user_id, secret, "Default key"))
                )
        except IntegrityError:
            raise InvalidRequest(f"A user with email '{email}' already exists.", param="email") from None
        return UserCreated(
            id=user_id,
            email=email,
            name=name,
            credit_balance_cents=credit_cents,
            api_key=secret,
            key_id=key_id,
        )

    async def get_user(self, user_id: str) -> UserResponse:
        async with self._db.read() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        if row is None:
            raise NotFound("User not found.")
        return _user_response(row)

    async def find_user(self, id_or_email: str) -> UserResponse:
        column = users.c.id if _valid_uuid(id_or_email) else users.c.email
        async with self._db.read() as conn:
            row = (await conn.execute(select(users).where(column == id_or_email))).first()
        if row is None:
            raise NotFound(f"No user '{id_or_email}'.")
        return _user_response(row)

    async def list_users(self) -> list[UserResponse]:
        async with self._db.read() as conn:
            rows = (await conn.execute(select(users).order_by(users.c.created_at))).all()
        return [_user_response(r) for r in rows]

    async def count_users(self) -> int:
        async with self._db.read() as conn:
            return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())

    async def create_key(self, user_id: str, request: KeyCreateRequest) -> KeyCreated:
        secret = generate_secret()
        row = self._key_row(
            str(uuid.uuid4()),
            user_id,
            secret,
            request.name or "API key",
            rpm=request.rate_limit_rpm,
            budget=request.monthly_budget_cents,
        )
        async with self._db.write() as conn:
            exists = (await conn.execute(select(users.c.id).where(users.c.id == user_id))).first()
            if exists is None:
                raise NotFound("User not found.")
            await conn.execute(api_keys.insert().values(**row))
        return KeyCreated(
            id=row["id"],
            key=secret,
            key_prefix=row["key_prefix"],
            name=row["name"],
            rate_limit_rpm=row["rate_limit_rpm"],
            monthly_budget_cents=row["monthly_budget_cents"],
            created_at=isoformat(row["created_at"]) or "",
        )

    async def list_keys(self, user_id: str) -> list[KeyResponse]:
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(api_keys)
                    .where(api_keys.c.user_id == user_id)
                    .order_by(api_keys.c.created_at.desc(), api_keys.c.id)
                )
            ).all()
        return [
            KeyResponse(
                id=r.id,
                key_prefix=r.key_prefix,
                name=r.name,
                rate_limit_rpm=r.rate_limit_rpm,
                monthly_budget_cents=r.monthly_budget_cents,
                is_active=r.is_active,
                created_at=isoformat(r.created_at) or "",
                last_used_at=isoformat(r.last_used_at),
            )
            for r in rows
        ]

    async def revoke_key(self, user_id: str, key_id: str) -> None:
        if not _valid_uuid(key_id):
            raise NotFound("API key not found.", param="id")
        async with self._db.write() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.user_id == user_id, api_keys.c.is_active.is_(True))
                .values(is_active=False, revoked_at=utcnow())
                .returning(api_keys.c.id)
            )
            if result.first() is None:
                raise NotFound("API key not found.", param="id")
        await self._auth.forget_key(key_id)

    async def revoke_key_admin(self, key_id: str) -> None:
        async with self._db.read() as conn:
            owner = (await conn.execute(select(api_keys.c.user_id).where(api_keys.c.id == key_id))).scalar()
        if owner is None:
            raise NotFound("API key not found.", param="id")
        await self.revoke_key(owner, key_id)

    def _key_row(
        self,
        key_id: str,
        user_id: str,
        secret: str,
        name: str,
        *,
        rpm: int | None = None,
        budget: int | None = None,
    ) -> dict[str, Any]:
        return {
            "id": key_id,
            "user_id": user_id,
            "key_hash": hash_secret(secret),
            "key_prefix": display_prefix(secret),
            "name": name,
            "rate_limit_rpm": rpm or self._default_rpm,
            "monthly_budget_cents": budget,
            "is_active": True,
            "created_at": utcnow(),
        }


def _user_response(row: Any) -> UserResponse:
    return UserResponse(
        id=row.id, email=row.email, name=row.name, credit_balance_cents=units_to_cents(row.balance_units)
    )
