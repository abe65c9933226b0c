"""Reading the MDX docs the way the tests need: front matter, fenced code blocks by language, and
the characters MDX would take for JSX in prose."""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^(?P<fence>```+|~~~+)(?P<info>.*)$")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
# '{' and '}' open and close JSX expressions, '<' a JSX tag, in MDX prose (escaped with a backslash).
_UNSAFE = re.compile(r"(?<!\\)[{}<]")


@dataclass(frozen=True)
class CodeBlock:
    language: str
    meta: str
    code: str
    line: int  # 1-based line of the opening fence


def front_matter(text: str) -> dict[str, str]:
    if not text.startswith("---\n"):
        return {}
    end = text.index("\n---\n", 4)
    fields = {}
    for line in text[4:end].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip().strip('"')
    return fields


def code_blocks(text: str) -> list[CodeBlock]:
    blocks: list[CodeBlock] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, info = opening["fence"], opening["info"].strip()
        body: list[str] = []
        start = index
        index += 1
        while index < len(lines) and not lines[index].startswith(fence):
            body.append(lines[index])
            index += 1
        language, _, meta = info.partition(" ")
        blocks.append(CodeBlock(language, meta.strip(), "\n".join(body) + "\n", start + 1))
        index += 1
    return blocks


def python_source(text: str) -> str:
    """The page's python blocks joined in order: one script, as a reader would run them."""
    return "\n".join(b.code for b in code_blocks(text) if b.language == "python" and "norun" not in b.meta)


def unsafe_prose(text: str) -> list[tuple[int, str]]:
    """(line, text) of prose lines with an unescaped '{', '}' or '<' outside code: MDX would parse
    them as JSX and fail to compile the page. Code spans may run over line breaks, as in Markdown."""
    lines = text.splitlines()
    end = text.index("\n---\n", 4) + 5 if text.startswith("---\n") else 0
    masked = ["" for _ in range(text[:end].count("\n"))]  # front matter is YAML, not prose
    fenced: str | None = None
    for line in lines[len(masked) :]:
        opening = _FENCE.match(line)
        if fenced is None and opening is not None:
            fenced = opening["fence"]
            masked.append("")
        elif fenced is not None:
            fenced = None if line.startswith(fenced) else fenced
            masked.append("")
        else:
            masked.append(line)
    prose = _INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), "\n".join(masked))
    return [
        (number, lines[number - 1])
        for number, line in enumerate(prose.splitlines(), start=1)
        if _UNSAFE.search(line)
    ]
