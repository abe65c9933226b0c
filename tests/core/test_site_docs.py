"""Where the published documents are found (checkout or wheel copy) and which names are pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchin.core import site_docs
from batchin.core.site_docs import SiteDocs, absolute_links
from batchin.errors import NotFound

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def site(tmp_path: Path) -> SiteDocs:
    root = tmp_path / "site"
    (root / "docs" / "tutorials").mkdir(parents=True)
    (root / "llms.txt").write_text("# Site\n", encoding="utf-8")
    (root / "docs" / "intro.mdx").write_text("intro", encoding="utf-8")
    (root / "docs" / "tutorials" / "first-steps.mdx").write_text("first", encoding="utf-8")
    (root / "docs" / "notes.txt").write_text("not a page", encoding="utf-8")
    (tmp_path / "secret.mdx").write_text("outside", encoding="utf-8")
    return SiteDocs(root)


def test_a_checkout_reads_the_repository_root() -> None:
    assert SiteDocs.locate().root == REPO
    assert SiteDocs.locate().document("llms.txt") == (REPO / "llms.txt").read_text(encoding="utf-8")


def test_a_wheel_copy_inside_the_package_is_preferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "batchin"
    (package / "core").mkdir(parents=True)
    (package / "_site").mkdir()
    (package / "_site" / "llms.txt").write_text("# Packaged\n", encoding="utf-8")
    monkeypatch.setattr(site_docs, "__file__", str(package / "core" / "site_docs.py"))
    assert SiteDocs.locate().root == package / "_site"
    assert SiteDocs.locate().document("llms.txt") == "# Packaged\n"


def test_pages_are_the_mdx_files_by_path(site: SiteDocs) -> None:
    assert site.pages() == ["intro", "tutorials/first-steps"]
    assert site.page("tutorials/first-steps") == "first"
    assert site.page("tutorials/first-steps.md") == "first"
    assert site.page("intro.mdx") == "intro"


NOT_PAGES = [
    *("../secret", "../secret.md", "tutorials/../../secret", "/etc/passwd", "", ".", ".."),
    *("notes", "notes.txt", "tutorials/", "tutorials", "intro.md.md", "Intro"),
    *("tutorials//first-steps", "tutorials\\first-steps"),
]


@pytest.mark.parametrize("path", NOT_PAGES)
def test_anything_else_is_not_found(site: SiteDocs, path: str) -> None:
    with pytest.raises(NotFound):
        site.page(path)


def test_a_symlink_out_of_docs_is_not_a_page(site: SiteDocs, tmp_path: Path) -> None:
    (site.docs_dir / "escape.mdx").symlink_to(tmp_path / "secret.mdx")
    with pytest.raises(NotFound):
        site.page("escape")


def test_only_root_documents_are_served(site: SiteDocs) -> None:
    assert site.document("llms.txt") == "# Site\n"
    with pytest.raises(NotFound):
        site.document("pyproject.toml")
    with pytest.raises(NotFound):
        site.document("agents.md")  # a known name that this install lacks


def test_root_relative_links_become_absolute() -> None:
    text = "[a](/docs/a.md) [b](https://x.test/b) [c](//cdn.test/c) [d](#anchor) [e](relative.md)"
    assert absolute_links(text, "https://api.test/") == (
        "[a](https://api.test/docs/a.md) [b](https://x.test/b) [c](//cdn.test/c) [d](#anchor) "
        "[e](relative.md)"
    )
