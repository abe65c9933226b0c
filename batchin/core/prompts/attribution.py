"""Which prompt version a text call ran, so every call is attributed to one.

In order:
1. named by the caller: the `X-BatchIn-Prompt-Version` header (or MCP's same HTTP header), else
   `metadata.prompt_version` in the request body. `<registry>@<version>`; a bare name is a registry
   of that name and the version id is the name itself. The id is echoed back verbatim.
2. derived from the system prompt (system and developer messages, joined): version
   `<registry>@<first 12 hex of sha256(system prompt)>`. The registry is `metadata.prompt_registry`
   when given, else `sys-<first 10 hex of sha256(first non-blank line)>` displayed as that line: a
   prompt edited below its first line becomes a new version of the same registry, while a new first
   line starts a new registry (name it with `prompt_registry` to keep the history together).
3. otherwise (no name, no system prompt) the call stays `default` and is not recorded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from batchin.errors import InvalidRequest
from batchin.models.base import ChatMessage
from batchin.protocol.prompts import REGISTRY_PATTERN

__all__ = ["DEFAULT_VERSION", "Attribution", "attribute", "parse_version_id", "system_text_of"]

DEFAULT_VERSION = "default"
_VERSION_ID = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.:+-]{0,99})(?:@[A-Za-z0-9_.:+-]{1,99})?")
_REGISTRY = re.compile(REGISTRY_PATTERN)
_HEADER = "X-BatchIn-Prompt-Version"


@dataclass(frozen=True, slots=True)
class Attribution:
    registry_id: str
    version_id: str
    display_name: str
    system_text: str | None  # becomes the version's template when the version is first seen


def parse_version_id(value: str, *, param: str) -> str:
    """The registry a version id belongs to; InvalidRequest naming `param` if malformed."""
    found = _VERSION_ID.fullmatch(value)
    if found is None:
        raise InvalidRequest(
            f"'{param}' must look like <registry>@<version> (letters, digits and _ . : + -, "
            "at most 100 characters each), e.g. support@v2.",
            param=param,
        )
    return found.group(1)


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def attribute(
    header: str | None, metadata: Mapping[str, str] | None, system_text: str | None
) -> Attribution | None:
    """`header`: the caller's X-BatchIn-Prompt-Version (CallContext.prompt_version)."""
    meta = metadata or {}
    if header and header != DEFAULT_VERSION:
        registry = parse_version_id(header, param=_HEADER)
        return Attribution(registry, header, registry, system_text)
    named = meta.get("prompt_version")
    if named:
        registry = parse_version_id(named, param="metadata.prompt_version")
        return Attribution(registry, named, registry, system_text)
    if not system_text:
        return None
    named_registry = meta.get("prompt_registry")
    if named_registry:
        if not _REGISTRY.fullmatch(named_registry):
            raise InvalidRequest(
                "'metadata.prompt_registry' must be letters, digits and _ . : + - (at most 100).",
                param="metadata.prompt_registry",
            )
        registry = display = named_registry
    else:
        first_line = next((line.strip() for line in system_text.splitlines() if line.strip()), "")
        registry = f"sys-{_digest(first_line, 10)}"
        display = first_line[:200] or registry
    return Attribution(registry, f"{registry}@{_digest(system_text, 12)}", display, system_text)


def system_text_of(messages: Iterable[ChatMessage]) -> str | None:
    """The system prompt of a conversation: its system messages, joined."""
    parts = [m.content for m in messages if m.role == "system"]
    return "\n\n".join(parts) if parts else None
