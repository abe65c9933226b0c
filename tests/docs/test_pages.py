"""The docs as files: the generated API reference and llms-full.txt are up to date with the routes,
every page is valid MDX prose with a title, and the sections the seed promises exist."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from batchin.core.site_docs import TRANSLATIONS, SiteDocs
from batchin.http_api.app import build_http_app
from tests.docs.mdx import code_blocks, front_matter, unsafe_prose

REPO = Path(__file__).resolve().parents[2]
SITE = SiteDocs.locate()


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_api_reference", REPO / "scripts" / "gen_api_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load_generator()


def test_generated_files_are_up_to_date(generator: ModuleType) -> None:
    for path, expected in generator.generate().items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        assert current == expected, (
            f"{path.relative_to(REPO)} is out of date with the routes or the pages it is built from; "
            f"regenerate it with: {generator.COMMAND}"
        )


def test_generation_is_deterministic(generator: ModuleType) -> None:
    assert generator.generate() == generator.generate()


def test_api_reference_has_every_operation(generator: ModuleType) -> None:
    openapi = build_http_app().state.openapi
    text = (REPO / "docs" / "api-reference.mdx").read_text(encoding="utf-8")
    for path, operations in openapi["paths"].items():
        for method in operations:
            assert f"### {method.upper()} `{path}`" in text
    for schema in openapi["components"]["schemas"]:
        assert f"### {schema}\n" in text


def test_the_seed_sections_exist() -> None:
    pages = SITE.pages()
    assert "quickstart" in pages
    assert "api-reference" in pages
    assert len([p for p in pages if p.startswith("tutorials/")]) >= 4
    assert {"cookbook/batch-documents", "cookbook/rag", "cookbook/audit-evidence"} <= set(pages)


@pytest.mark.parametrize("page", SITE.pages())
def test_page_is_mdx_with_a_title(page: str) -> None:
    text = (SITE.docs_dir / f"{page}.mdx").read_text(encoding="utf-8")
    meta = front_matter(text)
    assert meta.get("title"), f"{page}: front matter needs a title"
    assert meta.get("description"), f"{page}: front matter needs a description"
    assert unsafe_prose(text) == [], f"{page}: escape {{, }} and < in prose (MDX reads them as JSX)"
    for block in code_blocks(text):
        assert block.language, f"{page}:{block.line}: name the code block's language"


TRANSLATED = [(language, page) for language in TRANSLATIONS for page in SITE.pages(language)]


@pytest.mark.parametrize(("language", "page"), TRANSLATED)
def test_translation_is_mdx_with_a_title_and_the_originals_code(language: str, page: str) -> None:
    """A translation (docs/<language>/) follows the same rules, and translates the prose only: its code
    blocks are the English page's, in the same languages and order, its Python exactly (so what
    test_code_runs proves of the English page holds for the translation)."""
    text = SITE.page(page, language)
    meta = front_matter(text)
    assert meta.get("title")
    assert meta.get("description")
    assert unsafe_prose(text) == [], f"{language}/{page}: escape {{, }} and < in prose"
    assert page in SITE.pages(), f"{language}/{page} translates no English page"
    original = code_blocks(SITE.page(page))
    assert [b.language for b in code_blocks(text)] == [b.language for b in original]
    python = [b.code for b in code_blocks(text) if b.language == "python"]
    assert python == [b.code for b in original if b.language == "python"]


def test_translations_exist() -> None:
    assert ("zh", "quickstart") in TRANSLATED
    assert SITE.document("llms.txt", "zh").startswith("# BatchIn\n")


def test_every_cookbook_recipe_has_code_to_run() -> None:
    for page in ("cookbook/batch-documents", "cookbook/rag", "cookbook/audit-evidence"):
        text = (SITE.docs_dir / f"{page}.mdx").read_text(encoding="utf-8")
        assert any(block.language == "python" for block in code_blocks(text)), page


# -- the real MDX compiler ---------------------------------------------------------------------------

MDX_COMPILER = Path(__file__).parent / "mdx_compiler"


@pytest.fixture(scope="module")
def mdx_compiler() -> list[str]:
    """Node with @mdx-js/mdx from the npm registry (pinned in package.json), installed on first use."""
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm is not None, "Node.js/npm is required to compile the MDX docs (.ci/run installs it)"
    assert node is not None
    if not (MDX_COMPILER / "node_modules" / "@mdx-js" / "mdx").is_dir():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=MDX_COMPILER,
            check=True,
            timeout=600,
        )
    return [node, str(MDX_COMPILER / "compile.mjs")]


@pytest.mark.slow
def test_every_page_compiles_as_mdx(mdx_compiler: list[str]) -> None:
    files = [str(SITE.docs_dir / f"{page}.mdx") for page in SITE.pages()]
    files += [str(SITE.docs_dir / language / f"{page}.mdx") for language, page in TRANSLATED]
    done = subprocess.run([*mdx_compiler, *files], capture_output=True, text=True, timeout=300, check=False)
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["file"] for r in results] == files, done.stderr
    assert [r for r in results if not r["ok"]] == []
