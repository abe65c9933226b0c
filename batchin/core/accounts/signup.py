"""Self-service accounts: invites, signup, email verification and password sign-in.

`BATCHIN_SIGNUP` decides who may open an account: nobody (`closed`, the operator's CLI only), the
holder of an unused invite code (`invite`), or anyone (`open`). A new account has zero credit and
one key with the configured scopes. With SMTP configured it starts unverified: it can sign in, but
its keys are refused on paid operations (core/permissions.py) until the emailed link is followed.
Invite codes and verification tokens are stored as SHA-256 hashes only."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import get_args

from sqlalchemy import select, update

from batchin.config import Settings
from batchin.core.accounts.mail import send_mail
from batchin.core.accounts.passwords import hash_password, password_matches
from batchin.core.accounts.service import AccountOpening, AccountService
from batchin.core.billing.limits import RateLimiter
from batchin.core.clock import utcnow
from batchin.errors import InvalidRequest, NotFound, PermissionDenied, RateLimited
from batchin.protocol.accounts import Scope, UserCreated
from batchin.store.database import Database
from batchin.store.tables import signup_invites, users

__all__ = ["ENTRIES", "SignupForm", "SignupService"]

ENTRIES = ("global", "china")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignupForm:
    email: str
    password: str
    name: str
    entry: str = "global"
    invite: str = ""


class SignupService:
    def __init__(
        self, database: Database, accounts: AccountService, limiter: RateLimiter, settings: Settings
    ) -> None:
        self._db = database
        self._accounts = accounts
        self._limiter = limiter
        self._settings = settings
        known: tuple[Scope, ...] = get_args(Scope)
        unknown = [s for s in settings.signup_key_scopes if s not in known]
        if unknown:  # refused at start-up: a typo must not open accounts with no usable key
            raise ValueError(f"BATCHIN_SIGNUP_KEY_SCOPES names unknown scopes {unknown}; known: {known}")
        self._key_scopes = frozenset(s for s in known if s in settings.signup_key_scopes)

    @property
    def mode(self) -> str:
        return self._settings.signup

    async def create_invite(self, note: str | None = None) -> str:
        """A new single-use invite code (printed once by `batchin invites create`)."""
        code = "inv_" + secrets.token_urlsafe(18)
        async with self._db.write() as conn:
            await conn.execute(
                signup_invites.insert().values(code_hash=_digest(code), note=note, created_at=utcnow())
            )
        return code

    async def sign_up(self, form: SignupForm, *, verify_url: str) -> UserCreated:
        """Open an account. `verify_url` is the page the emailed link points to (its token appended)."""
        if self.mode == "closed":
            raise PermissionDenied("Signup is closed on this server; ask its operator for an account.")
        if form.entry not in ENTRIES:
            raise InvalidRequest(f"entry must be one of {list(ENTRIES)}.", param="entry")
        name = form.name.strip()
        if not 1 <= len(name) <= 200:
            raise InvalidRequest("A name has 1 to 200 characters.", param="name")
        password_hash = await hash_password(form.password)
        invite_hash = _digest(form.invite.strip()) if self.mode == "invite" else None
        if invite_hash is not None and not await self._invite_unused(invite_hash):
            raise InvalidRequest("This invite code is unknown or already used.", param="invite")
        token = secrets.token_urlsafe(32) if self._settings.smtp_url else None
        opening = AccountOpening(
            password_hash=password_hash,
            entry=form.entry,
            verify_token_hash=_digest(token) if token else None,
            key_scopes=self._key_scopes,
        )
        currency = "CNY" if form.entry == "china" else "USD"  # the China entry's accounts pay in fen
        created = await self._accounts.create_user(form.email, name, 0, opening=opening, currency=currency)
        if invite_hash is not None and not await self._use_invite(invite_hash, created.id):
            # Another signup used the code between the check and now: this account goes.
            await self._delete_user(created.id)
            raise InvalidRequest("This invite code is unknown or already used.", param="invite")
        if token is not None and self._settings.smtp_url:
            await send_mail(
                self._settings.smtp_url,
                self._settings.smtp_from,
                created.email,
                "Verify your BatchIn account / 验证您的 BatchIn 账户",
                f"Open this link to verify your email address:\n请打开以下链接验证您的邮箱：\n\n"  # noqa: RUF001
                f"{verify_url}?token={token}\n",
            )
        return created

    async def verify_email(self, token: str) -> str:
        """Mark the account of `token` verified; its user id. An unknown or used token is a 404."""
        async with self._db.write() as conn:
            row = (
                await conn.execute(
                    update(users)
                    .where(users.c.verify_token_hash == _digest(token))
                    .values(email_verified=True, verify_token_hash=None)
                    .returning(users.c.id)
                )
            ).first()
        if row is None:
            raise NotFound("This verification link is unknown or already used.", param="token")
        return str(row.id)

    async def is_verified(self, user_id: str) -> bool:
        async with self._db.read() as conn:
            verified = (
                await conn.execute(select(users.c.email_verified).where(users.c.id == user_id))
            ).scalar()
        return bool(verified)

    async def sign_in(self, email: str, password: str, *, client: str) -> str:
        """The user id of `email` when `password` is its password. Attempts are limited per email
        and per client address; every failure reads the same, whatever was wrong."""
        limit = self._settings.login_attempts_per_minute
        for bucket in (f"login:email:{email.strip().lower()}", f"login:client:{client}"):
            decision = await self._limiter.hit(bucket, limit)
            if not decision.allowed:
                raise RateLimited(
                    f"Too many sign-in attempts; retry after {decision.retry_after:.0f}s.",
                    retry_after=decision.retry_after,
                )
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(users.c.id, users.c.password_hash).where(users.c.email == email.strip())
                )
            ).first()
        if not await password_matches(row.password_hash if row else None, password) or row is None:
            raise InvalidRequest("Wrong email or password.", param="password")
        return str(row.id)

    async def _invite_unused(self, code_hash: str) -> bool:
        c = signup_invites.c
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(c.code_hash).where(c.code_hash == code_hash, c.used_at.is_(None)))
            ).first()
        return row is not None

    async def _use_invite(self, code_hash: str, user_id: str) -> bool:
        c = signup_invites.c
        async with self._db.write() as conn:
            result = await conn.execute(
                update(signup_invites)
                .where(c.code_hash == code_hash, c.used_at.is_(None))
                .values(used_at=utcnow(), used_by=user_id)
                .returning(c.code_hash)
            )
            return result.first() is not None

    async def _delete_user(self, user_id: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(users.delete().where(users.c.id == user_id))
