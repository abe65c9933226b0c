"""Users and their API keys. Any id that is not the caller's answers 404, never 403; a key of the
caller's own that is stronger than the calling key answers 403 (core/permissions.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from batchin.core.accounts.auth import AuthService
from batchin.core.accounts.key_rows import (
    decode_models,
    decode_regions,
    decode_scopes,
    encode_models,
    encode_regions,
    encode_scopes,
)
from batchin.core.accounts.keys import display_prefix, generate_secret, hash_secret
from batchin.core.billing.money import cents_to_units, units_to_cents
from batchin.core.clock import isoformat, month_of, utcnow
from batchin.core.context import Principal
from batchin.core.permissions import KeyPowers, ordered_scopes, powers_of, refuse_stronger
from batchin.errors import InvalidRequest, NotFound
from batchin.protocol.accounts import (
    ALL_SCOPES,
    KeyCreated,
    KeyCreateRequest,
    KeyResponse,
    Scope,
    UserCreated,
    UserResponse,
)
from batchin.protocol.currency import CURRENCIES, DEFAULT_CURRENCY, currency_of
from batchin.store.database import Database
from batchin.store.tables import api_keys, key_spend, topups, users


@dataclass(frozen=True, slots=True)
class AccountOpening:
    """How a self-service account differs from an operator's: a password, the entry it was opened
    through, a pending verification (the token's hash; None: verified) and its first key's scopes."""

    password_hash: str | None = None
    entry: str = "global"
    verify_token_hash: str | None = None
    key_scopes: frozenset[Scope] | None = None  # None: every scope


def _valid_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class AccountService:
    def __init__(
        self,
        database: Database,
        auth: AuthService,
        *,
        default_rpm: int,
        served_regions: tuple[str, ...],
    ) -> None:
        self._db = database
        self._auth = auth
        self._default_rpm = default_rpm
        self._served_regions = served_regions

    async def create_user(
        self,
        email: str,
        name: str,
        credit_cents: int,
        *,
        rate_limit_rpm: int | None = None,
        monthly_budget_cents: int | None = None,
        opening: AccountOpening | None = None,
        currency: str = DEFAULT_CURRENCY,
    ) -> UserCreated:
        """A user and a first key with every scope and every model (an operator's act); its RPM and
        budget are the given ones, else the server's default RPM and no budget. A self-service
        `opening` (core/accounts/signup.py) sets the password, entry, verification and the first
        key's scopes instead. `currency` is fixed for good: the credit, the budget and everything
        the account pays are in its minor units."""
        opening = opening or AccountOpening()
        email = email.strip()
        if currency not in CURRENCIES:
            raise InvalidRequest(
                f"Unknown currency '{currency[:8]}'; accounts are opened in {' or '.join(CURRENCIES)}.",
                param="currency",
            )
        if "@" not in email or len(email) > 320:
            raise InvalidRequest(f"'{email}' is not an email address.", param="email")
        if credit_cents < 0:
            raise InvalidRequest("credit_cents must be zero or more.", param="credit_cents")
        first_key = KeyPowers(
            frozenset(ALL_SCOPES if opening.key_scopes is None else opening.key_scopes),
            frozenset(),
            self._valid_rpm(rate_limit_rpm),
            self._valid_budget(monthly_budget_cents),
        )
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
                        currency=currency,
                        created_at=now,
                        password_hash=opening.password_hash,
                        email_verified=opening.verify_token_hash is None,
                        verify_token_hash=opening.verify_token_hash,
                        entry=opening.entry,
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
                    api_keys.insert().values(**_key_row(key_id, user_id, secret, "Default key", first_key))
                )
        except IntegrityError:
            raise InvalidRequest(f"A user with email '{email}' already exists.", param="email") from None
        return UserCreated(
            id=user_id,
            email=email,
            name=name,
            credit_balance_cents=credit_cents,
            currency=currency_of(currency),
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

    async def create_key(
        self, user_id: str, request: KeyCreateRequest, *, creator: Principal | None = None
    ) -> KeyCreated:
        """A new key of `user_id`. Made by a key (`creator`), it defaults to that key's scopes,
        models, regions and budget and at most its RPM, and may exceed none of them (403, nothing
        created); made by the operator (no creator), it defaults to every scope, model and region."""
        unserved = [r for r in request.regions or () if r not in self._served_regions]
        if unserved:
            raise InvalidRequest(
                f"Unknown region '{unserved[0]}'; this deployment serves {sorted(self._served_regions)}.",
                param="regions",
            )
        powers = self._requested_powers(request, creator)
        if creator is not None:
            refuse_stronger(powers_of(creator), powers, action="create")
        secret = generate_secret()
        row = _key_row(str(uuid.uuid4()), user_id, secret, request.name or "API key", powers)
        async with self._db.write() as conn:
            owner = (await conn.execute(select(users.c.currency).where(users.c.id == user_id))).first()
            if owner is None:
                raise NotFound("User not found.")
            await conn.execute(api_keys.insert().values(**row))
        return KeyCreated(
            id=row["id"],
            key=secret,
            key_prefix=row["key_prefix"],
            name=row["name"],
            rate_limit_rpm=powers.rate_limit_rpm,
            monthly_budget_cents=powers.monthly_budget_cents,
            scopes=ordered_scopes(powers.scopes),
            models=sorted(powers.models),
            regions=list(powers.regions),
            currency=currency_of(owner.currency),
            created_at=isoformat(row["created_at"]) or "",
        )

    def _requested_powers(self, request: KeyCreateRequest, creator: Principal | None) -> KeyPowers:
        default_rpm = self._default_rpm
        if creator is None:
            return KeyPowers(
                frozenset(ALL_SCOPES if request.scopes is None else request.scopes),
                frozenset(request.models or ()),
                request.rate_limit_rpm or default_rpm,
                request.monthly_budget_cents,
                tuple(dict.fromkeys(request.regions or ())),
            )
        # An omitted budget inherits the creator's; an explicit null asks for no budget at all.
        budget_given = "monthly_budget_cents" in request.model_fields_set
        return KeyPowers(
            creator.scopes if request.scopes is None else frozenset(request.scopes),
            creator.models if request.models is None else frozenset(request.models),
            request.rate_limit_rpm or min(default_rpm, creator.rate_limit_rpm),
            request.monthly_budget_cents if budget_given else creator.monthly_budget_cents,
            creator.regions if request.regions is None else tuple(dict.fromkeys(request.regions)),
        )

    async def list_keys(self, user_id: str) -> list[KeyResponse]:
        """Every key of the user, newest first, with what it has spent this calendar month (UTC)."""
        spend = key_spend.c
        this_month = (spend.key_id == api_keys.c.id) & (spend.month == month_of(utcnow()))
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(api_keys, spend.spent_units, users.c.currency)
                    .join(users, users.c.id == api_keys.c.user_id)
                    .outerjoin(key_spend, this_month)
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
                scopes=ordered_scopes(decode_scopes(r.scopes)),
                models=sorted(decode_models(r.models)),
                regions=list(decode_regions(r.regions)),
                spent_this_month_cents=units_to_cents(r.spent_units or 0),
                currency=currency_of(r.currency),
                is_active=r.is_active,
                created_at=isoformat(r.created_at) or "",
                last_used_at=isoformat(r.last_used_at),
            )
            for r in rows
        ]

    async def revoke_key(self, user_id: str, key_id: str, *, revoker: Principal | None = None) -> None:
        """Revoke one of the user's keys. A key (`revoker`) may revoke itself or any key no stronger
        than itself (403 otherwise); the operator (no revoker) any key."""
        if not _valid_uuid(key_id):
            raise NotFound("API key not found.", param="id")
        async with self._db.write() as conn:
            if revoker is not None and revoker.key_id != key_id:
                target = (
                    await conn.execute(
                        select(api_keys).where(
                            api_keys.c.id == key_id,
                            api_keys.c.user_id == user_id,
                            api_keys.c.is_active.is_(True),
                        )
                    )
                ).first()
                if target is None:
                    raise NotFound("API key not found.", param="id")
                refuse_stronger(powers_of(revoker), _powers_of_row(target), action="revoke")
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

    def _valid_rpm(self, rpm: int | None) -> int:
        if rpm is None:
            return self._default_rpm
        if not 1 <= rpm <= 1_000_000:
            raise InvalidRequest("rate_limit_rpm must be between 1 and 1000000.", param="rate_limit_rpm")
        return rpm

    @staticmethod
    def _valid_budget(budget: int | None) -> int | None:
        if budget is not None and not 0 <= budget <= 10**13:
            raise InvalidRequest("monthly_budget_cents must be zero or more.", param="monthly_budget_cents")
        return budget


def _key_row(key_id: str, user_id: str, secret: str, name: str, powers: KeyPowers) -> dict[str, Any]:
    return {
        "id": key_id,
        "user_id": user_id,
        "key_hash": hash_secret(secret),
        "key_prefix": display_prefix(secret),
        "name": name,
        "rate_limit_rpm": powers.rate_limit_rpm,
        "monthly_budget_cents": powers.monthly_budget_cents,
        "scopes": encode_scopes(powers.scopes),
        "models": encode_models(powers.models),
        "regions": encode_regions(powers.regions),
        "is_active": True,
        "created_at": utcnow(),
    }


def _powers_of_row(row: Any) -> KeyPowers:
    return KeyPowers(
        decode_scopes(row.scopes),
        decode_models(row.models),
        row.rate_limit_rpm,
        row.monthly_budget_cents,
        decode_regions(row.regions),
    )


def _user_response(row: Any) -> UserResponse:
    return UserResponse(
        id=row.id,
        email=row.email,
        name=row.name,
        credit_balance_cents=units_to_cents(row.balance_units),
        currency=currency_of(row.currency),
    )
