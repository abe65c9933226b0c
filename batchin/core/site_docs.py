"""The site's documents for people and agents: llms.txt, llms-full.txt, agents.md and the MDX pages
under docs/, read wherever the package runs from.

Translations live beside the English under docs/<language>/ (docs/zh/llms.txt, docs/zh/quickstart.mdx):
the same page paths, fewer pages. They are not pages of the English set.

A source checkout or an editable install (what `make` does) reads them at the repository root, where
they are written. A built wheel cannot reach the repository, so setup.py's build step copies them
into the package as `batchin/_site/`, which is looked at first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from batchin.errors import NotFound

__all__ = ["ROOT_DOCUMENTS", "TRANSLATIONS", "SiteDocs", "absolute_links"]

ROOT_DOCUMENTS = ("llms.txt", "llms-full.txt", "agents.md")
# Languages with translations under docs/<language>/, and which root documents each translates.
TRANSLATIONS = {"zh": ("llms.txt",)}
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

    def document(self, name: str, language: str = "en") -> str:
        """One of the root documents (llms.txt, llms-full.txt, agents.md), or its translation."""
        if name not in ROOT_DOCUMENTS or (language != "en" and name not in TRANSLATIONS.get(language, ())):
            raise NotFound(f"No document named '{name}'.")
        path = self.root / name if language == "en" else self.docs_dir / language / name
        if not path.is_file():  # a broken install: say so rather than answer 500
            raise NotFound(f"'{name}' is not installed with this server.")
        return path.read_text(encoding="utf-8")

    def page(self, path: str, language: str = "en") -> str:
        """A docs page by its path under docs/ without suffix (`tutorials/streaming-chat`); `.md` or
        `.mdx` on the end is accepted. Anything that is not a plain page path is 404, never a read.
        Another language's page is its translation, 404 when there is none."""
        file = self._page_file(path, language)
        if file is None:
            raise NotFound(f"No docs page '{path}'.")
        return file.read_text(encoding="utf-8")

    def pages(self, language: str = "en") -> list[str]:
        """Every page's path, sorted: the English set, or the pages translated into `language`."""
        folder = self._language_dir(language)
        if folder is None or not folder.is_dir():
            return []
        found = (p.relative_to(folder).with_suffix("") for p in folder.rglob(f"*{PAGE_SUFFIX}"))
        return sorted(p.as_posix() for p in found if self._is_page_path(p.parts, language))

    def _language_dir(self, language: str) -> Path | None:
        if language == "en":
            return self.docs_dir
        return self.docs_dir / language if language in TRANSLATIONS else None

    @staticmethod
    def _is_page_path(segments: tuple[str, ...] | list[str], language: str) -> bool:
        # docs/zh/ holds the Chinese pages: none of them is an English page.
        if language == "en" and segments[0] in TRANSLATIONS:
            return False
        return all(_SEGMENT.fullmatch(segment) for segment in segments)

    def _page_file(self, path: str, language: str = "en") -> Path | None:
        for suffix in (".mdx", ".md"):
            if path.endswith(suffix):
                path = path[: -len(suffix)]
                break
        segments = path.split("/")
        folder = self._language_dir(language)
        if folder is None or not self._is_page_path(segments, language):
            return None
        docs = folder.resolve()
        file = docs.joinpath(*segments).with_suffix(PAGE_SUFFIX).resolve()
        # A symlink inside docs/ pointing elsewhere is not a page either.
        if not file.is_relative_to(docs) or not file.is_file():
            return None
        return file


def absolute_links(text: str, base_url: str) -> str:
    """Root-relative Markdown links made absolute for the server answering (llms.txt readers fetch
    links as given, so they must carry the host)."""
    return _ROOT_LINK.sub(f"]({base_url.rstrip('/')}/", text)
