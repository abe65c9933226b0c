"""embed: /v1/embeddings' core call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Self

from pydantic import Field

from batchin.core.media.embeddings import EmbeddingsService
from batchin.mcp_server.caller import current, uses
from batchin.protocol.common import validate
from batchin.protocol.embeddings import CreateEmbeddingResponse, EmbeddingRequest
from batchin.services import Services
from batchin.tools.registry import ToolSpec


@dataclass(frozen=True, slots=True)
class EmbeddingToolDeps:
    """What embed uses."""

    embeddings: EmbeddingsService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(embeddings=services.embeddings)


async def embed(
    model: Annotated[str, Field(description="An embedding model id from list_models.")],
    input: Annotated[str | list[str], Field(description="A text, or a list of up to 2048 texts.")],
    dimensions: Annotated[
        int | None, Field(description="Truncate vectors to this many dimensions (Matryoshka models).", ge=1)
    ] = None,
    deps: EmbeddingToolDeps = uses(EmbeddingToolDeps),
) -> CreateEmbeddingResponse:
    """Embed texts as float vectors for search, clustering or RAG retrieval. The structured content
    is the OpenAI embedding list (data[i].embedding is the vector of input i); the text says how
    many and of what size. Billed per input token."""
    call = current()
    fields: dict[str, Any] = {"model": model, "input": input}
    if dimensions is not None:
        fields["dimensions"] = dimensions
    return await deps.embeddings.create(call.ctx, validate(EmbeddingRequest, fields))


def embeddings_text(result: CreateEmbeddingResponse) -> str:
    first = result.data[0].embedding if result.data else []
    dimensions = len(first) if isinstance(first, list) else "?"
    return (
        f"{len(result.data)} embedding(s) of {dimensions} dimensions from {result.model} "
        f"({result.usage.prompt_tokens} input tokens); the vectors are in the structured content "
        "(data[i].embedding)."
    )


TOOLS = [ToolSpec(embed, "Embeddings", scope="inference", summary=embeddings_text)]
