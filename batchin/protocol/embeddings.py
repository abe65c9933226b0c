"""Embeddings: OpenAI's request and response shapes.

`input` is a string or an array of strings. Arrays of token ids (OpenAI's other accepted forms) are
refused with a 400 naming `input`: ids only mean something in the tokenizer they came from, and
BatchIn's embedding models each have their own.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from batchin.errors import InvalidRequest
from batchin.protocol.common import RequestModel

MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit on inputs per request


class EmbeddingRequest(RequestModel):
    model: str = Field(min_length=1)
    input: str | list[Any] = Field(description="text, or an array of texts (at most 2048)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _not_a_number(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError("must be a string or an array of strings")
        return value

    def texts(self) -> list[str]:
        """The inputs as a list of strings, or InvalidRequest(param=input)."""
        items = [self.input] if isinstance(self.input, str) else self.input
        if not items:
            raise InvalidRequest("'input' must not be an empty array.", param="input")
        if len(items) > MAX_EMBEDDING_INPUTS:
            raise InvalidRequest(
                f"'input' has {len(items)} items; at most {MAX_EMBEDDING_INPUTS} are allowed per request.",
                param="input",
            )
        texts: list[str] = []
        for index, item in enumerate(items):
            if isinstance(item, int | list) and not isinstance(item, bool):
                raise InvalidRequest(
                    "Token-id arrays are not supported as 'input': BatchIn's embedding models use their own "
                    "tokenizers. Send the text instead.",
                    param="input",
                )
            if not isinstance(item, str):
                raise InvalidRequest(f"'input[{index}]' must be a string.", param="input")
            if not item:
                where = "'input'" if isinstance(self.input, str) else f"'input[{index}]'"
                raise InvalidRequest(f"{where} must not be an empty string.", param="input")
            texts.append(item)
        return texts


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
