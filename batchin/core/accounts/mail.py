"""Outgoing mail (the console's email verification) through the operator's SMTP server.

`BATCHIN_SMTP_URL` is `smtp://[user:password@]host[:port]` (STARTTLS when the server offers it) or
`smtps://...` (TLS from the first byte). smtplib is blocking, so each message is sent off the loop."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from batchin.errors import InvalidRequest

__all__ = ["send_mail"]

_TIMEOUT_SECONDS = 20.0


def _deliver(smtp_url: str, message: EmailMessage) -> None:
    url = urlsplit(smtp_url)
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise InvalidRequest("BATCHIN_SMTP_URL must be smtp://host:port or smtps://host:port.")
    secure = url.scheme == "smtps"
    port = url.port or (465 if secure else 25)
    client: smtplib.SMTP
    if secure:
        client = smtplib.SMTP_SSL(
            url.hostname, port, timeout=_TIMEOUT_SECONDS, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(url.hostname, port, timeout=_TIMEOUT_SECONDS)
    with client:
        client.ehlo()
        if not secure and client.has_extn("starttls"):
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if url.username:
            client.login(unquote(url.username), unquote(url.password or ""))
        client.send_message(message)


async def send_mail(smtp_url: str, sender: str, to: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    await asyncio.to_thread(_deliver, smtp_url, message)
