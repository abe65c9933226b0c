"""The site's documents for people and agents: llms.txt, llms-full.txt, agents.md and the MDX pages
under docs/, read wherever the package runs from.

A source checkout or an editable install (what `make` does) reads them at the repository root, where
they are written. A built wheel cannot reach the repository, so setup.py's build step copies them
into the package as `batchin/_site/`, which is looked at first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from batchin.errors import NotFound

__all__ = ["ROOT_DOCUMENTS", "SiteDocs", "absolute_links"]

ROOT_DOCUMENTS = ("llms.txt", "llms-full.txt", "agents.md")
PAGE_SUFFIX = ".mdx"
PACKAGED_DIR = "_site"

# A page path is folders and a name of these characters only: no dots, so never "..", never hidden.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# Markdown links written root-relative in the sources: `](/docs/x.md)`.
_ROOT_LINK = re.compile(r"\]\(/(?!/)")


@dataclass(frozen=True)
class SiteDocs:
    root: Path  # the folder holding llms.txt, agents.md and docs/

    @classmethod
    def locate(cls) -> SiteDocs:
        package = Path(__file__).resolve().parent.parent
        packaged = package / PACKAGED_DIR
        if (packaged / "llms.txt").is_file():
            return cls(packaged)
        return cls(package.parent)

    @property
    def docs_dir(self) -> Path:
        return self.root / "docs"

    def document(self, name: str) -> str:
        """One of the root documents (llms.txt, llms-full.txt, agents.md)."""
        if name not in ROOT_DOCUMENTS:
            raise NotFound(f"No document named '{name}'.")
        path = self.root / name
        if not path.is_file():  # a broken install: say so rather than answer 500
            raise NotFound(f"'{name}' is not installed with this server.")
        return path.read_text(encoding="utf-8")

    def page(self, path: str) -> str:
        """A docs page by its path under docs/ without suffix (`tutorials/streaming-chat`); `.md` or
        `.mdx` on the end is accepted. Anything that is not a plain page path is 404, never a read."""
        file = self._page_file(path)
        if file is None:
            raise NotFound(f"No docs page '{path}'.")
        return file.read_text(encoding="utf-8")

    def pages(self) -> list[str]:
        """Every page's path, sorted."""
        if not self.docs_dir.is_dir():
            return []
        found = (p.relative_to(self.docs_dir).with_suffix("") for p in self.docs_dir.rglob(f"*{PAGE_SUFFIX}"))
        return sorted(p.as_posix() for p in found if all(_SEGMENT.fullmatch(part) for part in p.parts))

    def _page_file(self, path: str) -> Path | None:
        for suffix in (".mdx", ".md"):
            if path.endswith(suffix):
                path = path[: -len(suffix)]
                break
        segments = path.split("/")
        if not all(_SEGMENT.fullmatch(segment) for segment in segments):
            return None
        docs = self.docs_dir.resolve()
        file = docs.joinpath(*segments).with_suffix(PAGE_SUFFIX).resolve()
        # A symlink inside docs/ pointing elsewhere is not a page either.
        if not file.is_relative_to(docs) or not file.is_file():
            return None
        return file


def absolute_links(text: str, base_url: str) -> str:
    """Root-relative Markdown links made absolute for the server answering (llms.txt readers fetch
    links as given, so they must carry the host)."""
    return _ROOT_LINK.sub(f"]({base_url.rstrip('/')}/", text)
