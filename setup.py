"""setuptools build hook; all metadata is in pyproject.toml.

A wheel cannot reach the repository it was built from, so the documents the server publishes
(llms.txt, llms-full.txt, agents.md, docs/**/*.mdx, the pictures the pages show (docs/images/**/*.png)
and the translations' docs/<language>/llms.txt, at the repository root) are copied into the
built package as batchin/_site/, where batchin/core/site_docs.py finds them. An editable install
(what `make` uses) reads them from the checkout instead, so nothing is copied then.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SITE_FILES = ("llms.txt", "llms-full.txt", "agents.md")


class BuildPyWithSite(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "batchin" / "_site"
        self.mkpath(str(target))
        for name in SITE_FILES:
            self.copy_file(str(ROOT / name), str(target / name), preserve_mode=False)
        docs = ROOT / "docs"
        published = [*docs.rglob("*.mdx"), *docs.glob("*/llms.txt"), *(docs / "images").rglob("*.png")]
        for page in sorted(published):
            destination = target / "docs" / page.relative_to(docs)
            self.mkpath(str(destination.parent))
            self.copy_file(str(page), str(destination), preserve_mode=False)


setup(cmdclass={"build_py": BuildPyWithSite})
