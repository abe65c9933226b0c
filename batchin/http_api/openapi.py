"""OpenAPI 3.1, generated from the route table and the protocol models (never written by hand)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from batchin import __version__
from batchin.errors import (
    BatchInError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    StorageQuotaExceeded,
    Unauthorized,
)
from batchin.http_api.endpoint import Endpoint, FormBody, openapi_path
from batchin.protocol.common import ErrorResponse

_REF = "#/components/schemas/{model}"
_ERRORS: dict[int, type[BatchInError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    402: PaymentRequired,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    429: RateLimited,
    503: ServiceUnavailable,
}


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, annotation: Any) -> dict[str, Any]:
        schema = TypeAdapter(annotation).json_schema(ref_template=_REF, mode="serialization")
        self.components.update(schema.pop("$defs", {}))
        title = schema.get("title")
        if schema.get("type") == "object" and isinstance(title, str) and re.fullmatch(r"\w+", title):
            self.components[title] = schema
            return {"$ref": _REF.format(model=title)}
        return schema

    def form_ref(self, form: FormBody) -> dict[str, Any]:
        """The form as one object schema: the model's fields, arrays under their `name[]` part
        name, and each file as a binary part."""
        schema = TypeAdapter(form.model).json_schema(ref_template=_REF, mode="validation")
        self.components.update(schema.pop("$defs", {}))
        properties: dict[str, Any] = {}
        for name, field in schema.get("properties", {}).items():
            properties[f"{name}[]" if field.get("type") == "array" else name] = field
        required = [f"{n}[]" if properties.get(f"{n}[]") else n for n in schema.get("required", [])]
        for name in form.files:
            properties[name] = {
                "type": "string",
                "format": "binary",
                "contentMediaType": "application/octet-stream",
            }
        base = str(schema.get("title", "Request"))
        title = base if base.endswith("Form") else f"{base}Form"
        self.components[title] = {
            **schema,
            "title": title,
            "properties": properties,
            "required": [*form.files, *required],
        }
        return {"$ref": _REF.format(model=title)}

    def request_ref(self, annotation: Any) -> dict[str, Any]:
        schema = TypeAdapter(annotation).json_schema(ref_template=_REF, mode="validation")
        self.components.update(schema.pop("$defs", {}))
        title = schema.get("title", "Request")
        self.components[title] = schema
        return {"$ref": _REF.format(model=title)}


def build_openapi(endpoints: list[Endpoint], *, server_url: str) -> dict[str, Any]:
    schemas = _Schemas()
    error_ref = schemas.ref(ErrorResponse)
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        for path in (ep.path, *ep.extra_paths):
            paths.setdefault(openapi_path(path), {})[ep.method.lower()] = _operation(
                ep, path, schemas, error_ref
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "BatchIn API",
            "version": __version__,
            "description": "OpenAI-compatible model API with accounts, keys, billing and usage.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "batchin_api_…"}
            },
            "schemas": schemas.components,
        },
    }


def _operation(ep: Endpoint, path: str, schemas: _Schemas, error_ref: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": ep.operation_id if path == ep.path else f"{ep.operation_id}_alias",
        "summary": ep.summary,
        "tags": [ep.tag],
    }
    if ep.public:
        op["security"] = []
    else:
        # OpenAPI 3.1 lets a bearer requirement list the roles it needs: here the key scope.
        op["security"] = [{"bearerAuth": [ep.scope]}]
        op["description"] = f"Needs an API key with the `{ep.scope}` scope."
        op["x-batchin-scope"] = ep.scope
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)(?::\w+)?}", path)
    ]
    parameters += [
        {"name": q.name, "in": "query", "required": False, "schema": q.schema, "description": q.description}
        for q in ep.query
    ]
    if parameters:
        op["parameters"] = parameters
    body: dict[str, Any] = {}
    if ep.request_model is not None:
        body["application/json"] = {"schema": schemas.request_ref(ep.request_model)}
    if ep.form is not None:
        body["multipart/form-data"] = {"schema": schemas.form_ref(ep.form)}
        if ep.form.urlencoded:
            body["application/x-www-form-urlencoded"] = {"schema": schemas.request_ref(ep.form.model)}
    if body:
        # An empty JSON body is read as `{}` (http_api/rendering.py): where that is a valid request
        # (every field optional), the body is optional too.
        required = ep.form is not None or not _accepts_empty_object(ep.request_model)
        op["requestBody"] = {"required": required, "content": body}
    responses: dict[str, Any] = {}
    if ep.status_code == 204:
        responses["204"] = {"description": "No Content"}
    elif ep.response_model is not None:
        responses[str(ep.status_code)] = {
            "description": "OK",
            "content": {ep.content_type: {"schema": schemas.ref(ep.response_model)}},
        }
    else:
        responses[str(ep.status_code)] = {
            "description": "OK",
            "content": {ep.content_type: _raw(ep.content_type)},
        }
    for content_type in ep.other_content_types:
        responses[str(ep.status_code)]["content"][content_type] = _raw(content_type)
    codes = set(ep.errors) | ({401, 403, 429} if not ep.public else set())
    for status in sorted(codes):
        error = _ERRORS.get(status, BatchInError)
        described = f"`{error.code}`"
        if status == StorageQuotaExceeded.status and ep.stores_files:
            described += f" or `{StorageQuotaExceeded.code}` (the user's storage quota)"
        responses[str(status)] = {
            "description": described,
            "content": {"application/json": {"schema": error_ref}},
        }
    # Any other failure (500 internal_error above all) still leaves as the error envelope.
    responses["default"] = {
        "description": "Any other error, in the same envelope",
        "content": {"application/json": {"schema": error_ref}},
    }
    op["responses"] = responses
    return op


def _accepts_empty_object(annotation: Any) -> bool:
    try:
        TypeAdapter(annotation).validate_python({})
    except ValidationError:
        return False
    return True


def _raw(content_type: str) -> dict[str, Any]:
    """A body that is not JSON: text, or bytes of its media type."""
    if content_type == "application/json":
        return {}  # JSON without a declared model (described in the summary)
    if content_type == "text/event-stream":
        events = "`data: <JSON>` events (chunks, or typed events on /v1/responses), then `data: [DONE]`"
        return {"schema": {"type": "string", "description": events}}
    if content_type.startswith("text/"):
        return {"schema": {"type": "string"}}
    if "*" in content_type:  # a media type range: the body's own type is in its Content-Type
        return {"schema": {"type": "string", "format": "binary"}}
    return {"schema": {"type": "string", "format": "binary", "contentMediaType": content_type}}
