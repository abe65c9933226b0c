"""Prompt templates: system prompts with `{{name}}` placeholders.

An experiment replays a baseline run with the candidate's template. When the templates have
variables, the run's values are read back out of its system prompt by matching it against the
baseline template (`extract`), then put into the candidate's (`render`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["MissingVariable", "extract", "render", "variables_of"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class MissingVariable(LookupError):
    """A template names a variable the run gave no value for."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def variables_of(template: str) -> list[str]:
    """The placeholders' names, in order of first appearance."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(template)))


def render(template: str, values: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise MissingVariable(name)
        return values[name]

    return _PLACEHOLDER.sub(value, template)


def extract(template: str, text: str) -> dict[str, str] | None:
    """The variables' values for which `template` renders to `text`, or None if it cannot."""
    pattern: list[str] = []
    seen: set[str] = set()
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        pattern.append(re.escape(template[position : match.start()]))
        name = match.group(1)
        # A name used twice must have the same value both times.
        pattern.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
        seen.add(name)
        position = match.end()
    pattern.append(re.escape(template[position:]))
    found = re.fullmatch("".join(pattern), text, flags=re.DOTALL)
    return None if found is None else {name: value for name, value in found.groupdict().items()}
