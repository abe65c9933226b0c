"""Every page's Python runs: the code blocks of agents.md and of each docs page (quick start, prompt
registry, experiments, tutorials, cookbook recipes), joined in order as a reader would run them,
executed in a fresh interpreter against a live server with BATCHIN_BASE_URL and BATCHIN_API_KEY
set, on the embedded models. A page passes when its script exits 0 and prints what the page says it will."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from batchin.core.site_docs import SiteDocs
from tests.docs.conftest import Live
from tests.docs.mdx import python_source

pytestmark = pytest.mark.slow

SITE = SiteDocs.locate()
# A hang guard only: a page that runs this long is stuck (the longest takes well under a minute).
_TIMEOUT_SECONDS = 600


def _sources() -> dict[str, str]:
    """Pages that teach by running code; the reference pages hold fragments, not programs."""
    pages = {"agents.md": (SITE.root / "agents.md").read_text(encoding="utf-8")}
    pages |= {
        page: (SITE.docs_dir / f"{page}.mdx").read_text(encoding="utf-8")
        for page in SITE.pages()
        if page in ("quickstart", "prompts", "experiments", "structured-outputs", "tools")
        or page.startswith(("tutorials/", "cookbook/"))
    }
    return {page: code for page, text in pages.items() if (code := python_source(text)).strip()}


SOURCES = _sources()

# What each page tells the reader its code prints (beyond exiting cleanly).
EXPECTED = {
    "agents.md": ["'chat'", "'list_models'", "greeting@v1 ", "batch completed"],
    "quickstart": ["2 vectors of 384 dimensions", "smollm2-135m-instruct ['chat', 'completion']"],
    "prompts": [
        "support@v1 promoted ['shop']",
        "\nsys-",
        "\ntea@",
        "support@v2 observed experiment: None",
        "rollback support@v2 -> support@v1",
        "'support@v2': 'retired'",
        "3 label moves, every signature verified",
    ],
    "experiments": [
        "concierge@v2 candidate",
        "candidate rejected",
        "manual embedding_similarity",
        "replays billed",
    ],
    "structured-outputs": [
        "'smollm2-135m-instruct': ['json_schema', 'logprobs', 'penalties', 'tools']",
        "parsed: Palette",
        "responses parsed: Palette",
        "langchain: Palette",
        "json_object: dict",
        "ticket keys: ['priority', 'tags']",
        "400 param: response_format - Unsupported JSON schema: 'minimum' is not supported",
        "tokens join to the text: True",
        "3 choices;",
        "penalised: True",
    ],
    "tutorials/batches": [
        "completed: 3 completed, 1 failed of 4",
        "q-five-answers failed: invalid_request",
        "3 tasks billed",
        "failed [(1, 'model_not_found'), (2, 'invalid_json_line')]",
        "backlog ended cancelled",
        "3 answers written",
    ],
    "tools": [
        "tool_calls get_weather ['city', 'unit']",
        "answer: ",
        "streamed call: get_weather in",
        "responses call: get_weather True",
        "responses answer: ",
        "langchain call: lookup_weather ['city', 'unit']",
    ],
    "tutorials/streaming-chat": ["tokens streamed", "stopped after 5 chunks", "400 invalid_request param: n"],
    "tutorials/claude-desktop": ["tools: ", "'smollm2-135m-instruct'"],
    "tutorials/audit-verification": ["'valid': True", "without rewriting history"],
    "tutorials/traces": ["is a child of mine", "200 {}", "spans exported"],
    "cookbook/rag": ["top source: returns", "[support-answer@v2]", "[support-answer@v1]"],
    "cookbook/audit-evidence": ["'review': 'human-review'", "review ", "valid, leaf"],
    "cookbook/batch-documents": ["stored 12 of 12 summaries", "event batch.completed"],
}


def test_every_page_with_code_is_checked() -> None:
    assert set(SOURCES) == set(EXPECTED)


@pytest.mark.parametrize("page", sorted(SOURCES))
async def test_page_code_runs(page: str, live: Live, tmp_path: Path) -> None:
    script = tmp_path / (page.replace("/", "_").replace(".", "_") + ".py")
    script.write_text(SOURCES[page], encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHIN_")}
    env |= {"BATCHIN_BASE_URL": live.base_url, "BATCHIN_API_KEY": live.api_key}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), _TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"{page}: its code did not finish")
    printed = output.decode("utf-8", errors="replace")
    assert process.returncode == 0, f"{page}: its code failed:\n{printed}"
    for expected in EXPECTED[page]:
        assert expected in printed, f"{page}: expected {expected!r} in:\n{printed}"
