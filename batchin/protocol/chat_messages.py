"""A chat message as callers send it (Chat Completions' `messages`, and what the Responses API's
input items become): its text and image parts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from batchin.errors import InvalidRequest
from batchin.protocol.tools import ToolCall

_TEXT_PARTS = ("text", "input_text", "output_text")
_IMAGE_PARTS = ("image_url", "input_image")  # Chat Completions' name, and the Responses API's
_IMAGE_URL_PREFIXES = ("https://", "http://", "data:image/")


class ChatMessageIn(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(default=None, description="An assistant message's calls.")
    tool_call_id: str | None = Field(default=None, description="A tool message: the call it answers.")

    def text(self) -> str:
        """The message's text: its text parts joined (image parts are not text)."""
        return "".join(text for kind, text, _ in self.parts() if kind == "text")

    def has_images(self) -> bool:
        return isinstance(self.content, list) and any(p.get("type") in _IMAGE_PARTS for p in self.content)

    def parts(self) -> list[tuple[str, str, str | None]]:
        """The content in order, as ("text", text, None) and ("image_url", url, detail) parts; an
        image is an https/http URL or a `data:image/...` URL, in either API's part shape."""
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [("text", self.content, None)]
        parts: list[tuple[str, str, str | None]] = []
        for part in self.content:
            kind = part.get("type")
            if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
                parts.append(("text", part["text"], None))
            elif kind in _IMAGE_PARTS:
                parts.append(("image_url", *_image(part)))
            else:
                raise InvalidRequest(
                    f"Content part of type '{kind}' is not supported; send text or image_url parts.",
                    param="messages",
                )
        return parts


def _image(part: dict[str, Any]) -> tuple[str, str | None]:
    """An image part's URL and detail: `{"image_url": {"url", "detail"}}` (Chat Completions) or
    `{"image_url": "...", "detail"}` (Responses)."""
    image = part.get("image_url")
    url, detail = (image.get("url"), image.get("detail")) if isinstance(image, dict) else (image, None)
    detail = detail if detail is not None else part.get("detail")
    if not isinstance(url, str) or not url.startswith(_IMAGE_URL_PREFIXES):
        raise InvalidRequest(
            "An image part needs image_url.url: an https:// URL or a data:image/...;base64 URL.",
            param="messages",
        )
    if detail is not None and detail not in ("low", "high", "auto"):
        raise InvalidRequest("image_url.detail must be 'low', 'high' or 'auto'.", param="messages")
    return url, detail
