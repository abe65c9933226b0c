"""Write docs/api-reference.mdx from the app's OpenAPI document, and llms-full.txt, which embeds it.

    .venv/bin/python scripts/gen_api_reference.py          # rewrite both files
    .venv/bin/python scripts/gen_api_reference.py --check  # exit 1 if either is out of date

The OpenAPI document is the one `/openapi.json` serves, built in process from the route table (no
server needed). Output depends only on that document and the hand-written pages, so it is
deterministic; tests/docs/test_api_reference.py fails when a route changes and this was not rerun.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
API_REFERENCE = REPO / "docs" / "api-reference.mdx"
LLMS_FULL = REPO / "llms-full.txt"
COMMAND = ".venv/bin/python scripts/gen_api_reference.py"

# What llms-full.txt is made of, in order: hand-written pages (edit those, not llms-full.txt).
FULL_SOURCES = (
    "agents.md",
    "docs/quickstart.mdx",
    "docs/api-reference.mdx",
    "docs/reference/keys.mdx",
    "docs/reference/billing.mdx",
    "docs/reference/regions.mdx",
    "docs/reference/audit.mdx",
    "docs/reference/traces.mdx",
    "docs/reference/webhooks.mdx",
    "docs/reference/retention.mdx",
    "docs/reference/remote-models.mdx",
    "docs/reference/scaling.mdx",
    "docs/structured-outputs.mdx",
    "docs/tools.mdx",
    "docs/prompts.mdx",
    "docs/experiments.mdx",
)
_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    402: "payment_required",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
    501: "not_implemented",
    503: "service_unavailable",
}
_REF = "#/components/schemas/"


def load_openapi() -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from batchin.http_api.app import build_http_app

    openapi: dict[str, Any] = build_http_app().state.openapi
    return openapi


# -- Markdown/MDX text -----------------------------------------------------------------------------


def prose(text: str) -> str:
    """Text safe in MDX prose and in Markdown tables: braces and '<' would start JSX, '|' a cell."""
    text = " ".join(text.split())
    return (
        text.replace("\\", "\\\\")
        .replace("{", "\\{")
        .replace("}", "\\}")
        .replace("<", "&lt;")
        .replace("|", "\\|")
    )


def code(text: str) -> str:
    # '|' escaped even inside code: a table cell would end there (GFM renders the escape as '|').
    text = text.replace("|", "\\|")
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def anchor(name: str) -> str:
    return name.lower()


# -- JSON Schema to words --------------------------------------------------------------------------


def type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(_REF)
        return f"[{name}](#{anchor(name)})"
    if "const" in schema:
        return code(repr_json(schema["const"]))
    if "enum" in schema:
        return " or ".join(code(repr_json(v)) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            nullable = len(options) < len(schema[key])
            words = " or ".join(type_of(s) for s in options) or "null"
            return f"{words} (nullable)" if nullable and options else words
    kind = schema.get("type")
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        values = schema["additionalProperties"]
        return f"map of {type_of(values)}" if values else "object"
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    return str(kind) if kind else "any"


def repr_json(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def constraints(schema: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for option in [schema, *schema.get("anyOf", [])]:
        for key, label in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("minLength", "min length"),
            ("maxLength", "max length"),
            ("minItems", "min items"),
            ("maxItems", "max items"),
        ):
            if key in option:
                found.append(f"{label} {option[key]}")
        if "pattern" in option:
            found.append(f"pattern {code(option['pattern'])}")
    return found


def field_rows(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| Field | Type | Required | Notes |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        notes = [prose(prop["description"])] if prop.get("description") else []
        notes += [c if c.startswith("pattern") else prose(c) for c in constraints(prop)]
        if prop.get("default") is not None and "const" not in prop:
            notes.append(f"default {code(repr_json(prop['default']))}")
        yes = "yes" if name in required else "no"
        rows.append(f"| {code(name)} | {type_of(prop)} | {yes} | {'; '.join(notes)} |")
    return rows


# -- the page ----------------------------------------------------------------------------------------


def render_api_reference(openapi: dict[str, Any]) -> str:
    out = [
        "---",
        "title: API reference",
        "description: Every HTTP operation of BatchIn, generated from /openapi.json.",
        f'generated: "by scripts/gen_api_reference.py from /openapi.json; do not edit, run {COMMAND}"',
        "---",
        "",
        "# API reference",
        "",
        f"BatchIn {prose(openapi['info']['version'])}. Every path below is relative to the server's base "
        "URL (`http://127.0.0.1:8000` for `make serve`); OpenAI SDKs take `http://HOST:PORT/v1` as "
        "`base_url`. Operations marked **Bearer** need `Authorization: Bearer <API key>`; **public** "
        "ones need nothing. Every error is the envelope "
        '`{"error": {"message", "type", "code", "param"}}` ([ErrorResponse](#errorresponse)); the '
        "codes are listed under each operation. Inference responses carry `X-Request-Id`, "
        "`traceparent`, `X-BatchIn-Run-Id`, `X-BatchIn-Prompt-Version`, `X-VaaS-Record-Id`, "
        "`X-VaaS-Signature` and `X-VaaS-PublicKey` (a video job: once completed, on "
        "`GET /v1/videos/{video_id}` and its `/content`, naming the call that created it); "
        "rate-limited operations carry `x-ratelimit-limit`, "
        "`x-ratelimit-remaining` and `x-ratelimit-reset`, and a 429 carries `Retry-After`.",
        "",
        "The machine-readable source is [/openapi.json](/openapi.json).",
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            by_tag.setdefault(operation["tags"][0], []).append((method.upper(), path, operation))
    for tag, operations in by_tag.items():
        out += [f"## {tag.capitalize()}", ""]
        for method, path, operation in operations:
            out += render_operation(method, path, operation)
    out += ["## Schemas", ""]
    for name, schema in sorted(openapi["components"]["schemas"].items()):
        out += [f"### {name}", ""]
        if schema.get("description"):
            out += [prose(schema["description"]), ""]
        if schema.get("properties"):
            out += [*field_rows(schema), ""]
        else:
            out += [f"Type: {type_of(schema)}.", ""]
    return "\n".join(out).rstrip() + "\n"


def render_operation(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    scope = operation.get("x-batchin-scope")
    auth = (
        "public" if operation.get("security") == [] else f"Bearer, scope {code(scope)}" if scope else "Bearer"
    )
    out = [f"### {method} {code(path)}", "", f"{prose(operation['summary'])} Auth: **{auth}**.", ""]
    parameters = operation.get("parameters", [])
    if parameters:
        out += ["| Parameter | In | Type | Required | Notes |", "|---|---|---|---|---|"]
        for p in parameters:
            notes = [prose(p["description"])] if p.get("description") else []
            notes += [c if c.startswith("pattern") else prose(c) for c in constraints(p["schema"])]
            if "default" in p["schema"]:
                notes.append(f"default {code(repr_json(p['schema']['default']))}")
            yes = "yes" if p.get("required") else "no"
            out.append(
                f"| {code(p['name'])} | {p['in']} | {type_of(p['schema'])} | {yes} | {'; '.join(notes)} |"
            )
        out.append("")
    body = operation.get("requestBody")
    if body:
        for media_type, content in body["content"].items():
            out += [f"Request body ({code(media_type)}): {type_of(content['schema'])}.", ""]
    errors: list[str] = []
    for status, response in operation["responses"].items():
        if status == "default":
            continue  # any other error: the envelope, as the page's introduction says
        if int(status) >= 400:
            # The description names the codes (a 413 may be either of two): backquoted, or none.
            named = re.findall(r"`([a-z_]+)`", response.get("description", ""))
            codes = " / ".join(named) or _STATUS_CODES.get(int(status), "internal_error")
            errors.append(code(f"{status} {codes}"))
            continue
        content = response.get("content")
        if not content:
            out += [f"Response `{status}`: no body.", ""]
        for media_type, media in (content or {}).items():
            shape = f": {type_of(media['schema'])}" if media.get("schema") else ""
            out += [f"Response `{status}` ({code(media_type)}){shape}.", ""]
    if errors:
        out += [f"Errors: {', '.join(errors)}.", ""]
    return out


# -- llms-full.txt ---------------------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~)")


def strip_front_matter(text: str) -> str:
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            return text[end + 5 :].lstrip("\n")
    return text


def demote_headings(text: str) -> str:
    """Every Markdown heading one level down (code blocks untouched), so pages nest under one H1."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            line = "#" + line
        lines.append(line)
    return "\n".join(lines)


def render_llms_full(read: Any) -> str:
    out = [
        "# BatchIn: the full reference",
        "",
        "> Everything an agent needs in one file: how to connect (MCP over Streamable HTTP or stdio, "
        "the OpenAI-compatible HTTP API), every MCP tool and resource, every HTTP path with its "
        "parameters and schemas, authentication, errors, headers and limits.",
        "",
        f"This file is assembled by `{COMMAND}` from {', '.join(FULL_SOURCES)}; edit those. "
        "Tutorials and cookbook recipes are linked at the end.",
        "",
    ]
    for source in FULL_SOURCES:
        out += [demote_headings(strip_front_matter(read(source))).rstrip(), ""]
    out += ["## More", ""]
    for page in ("tutorials", "cookbook"):
        for path in sorted((REPO / "docs" / page).glob("*.mdx")):
            title = _title(path.read_text(encoding="utf-8")) or path.stem
            out.append(f"- [{title}](/docs/{page}/{path.stem}.md)")
    return "\n".join(out).rstrip() + "\n"


def _title(text: str) -> str | None:
    match = re.search(r"^title: (.+)$", text, re.MULTILINE)
    return match.group(1).strip().strip('"') if match else None


def generate() -> dict[Path, str]:
    """The files this script owns and what they should contain."""
    reference = render_api_reference(load_openapi())

    def read(source: str) -> str:
        if source == "docs/api-reference.mdx":
            return reference
        return (REPO / source).read_text(encoding="utf-8")

    return {API_REFERENCE: reference, LLMS_FULL: render_llms_full(read)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generate().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path.relative_to(REPO).as_posix())
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run {COMMAND}", file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
