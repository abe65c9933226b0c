"""A real SMTP server on a local port (aiosmtpd), keeping every message it receives: what the
console's verification mail is sent to in tests."""

from __future__ import annotations

import email
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.live_server import free_port


@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)
    url: str = ""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def wait_for(self, to: str, timeout: float = 20.0) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if message["To"] == to:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no mail to {to} within {timeout}s")

    def verification_link(self, to: str) -> str:
        body = self.wait_for(to).get_payload(decode=True)
        assert isinstance(body, bytes)
        found = re.search(r"(https?://\S+/console/verify-email\?token=\S+)", body.decode())
        assert found is not None, body
        return found.group(1)


@contextmanager
def running_smtp() -> Iterator[Mailbox]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    mailbox.url = f"smtp://127.0.0.1:{port}"
    try:
        yield mailbox
    finally:
        controller.stop()
