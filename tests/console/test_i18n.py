"""The console's catalogs and language choice, and what its pages load."""

from __future__ import annotations

import re
import string
from importlib import resources
from pathlib import Path
from typing import get_args

import pytest

from batchin.console.evidence_pages import VERIFY_CHECKS
from batchin.console.i18n import LANGUAGES, Translator, catalog, choose_language
from batchin.console.routes import STATIC_ASSETS
from batchin.core.accounts.signup import ENTRIES
from batchin.protocol.accounts import ALL_SCOPES
from batchin.protocol.prompts import (
    ExperimentStatus,
    PromotionStatus,
    PromptLabelMoveRequest,
    PromptRegressionItem,
    Source,
    VersionStatus,
)

# Values the Prompts pages translate by building a key from them (prompts.<prefix>.<value>).
PROMPT_VALUES = {
    "experiment": get_args(ExperimentStatus),
    "promotion": get_args(PromotionStatus),
    "version_status": get_args(VersionStatus),
    "source": get_args(Source),
    "regression": get_args(PromptRegressionItem.model_fields["status"].annotation),
}
CONSOLE = Path(resources.files("batchin.console"))  # type: ignore[arg-type]


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_catalogs_hold_the_same_keys_and_placeholders() -> None:
    english, chinese = catalog("en"), catalog("zh")
    assert set(english) == set(chinese)
    for key, text in english.items():
        assert placeholders(text) == placeholders(chinese[key]), key
        assert chinese[key].strip(), key


def test_every_key_a_page_names_is_in_the_catalogs() -> None:
    used: set[str] = set()
    for path in [*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("*.py")]:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z0-9_:.]+)["']""", path.read_text()))
    # Keys built in templates from a value (scope., entry., topup_status.) are checked by their prefix.
    assert used, "no t(...) calls found"
    built = [f"scope.{s}" for s in ALL_SCOPES] + [f"entry.{e}" for e in ENTRIES]
    built += [f"topup_status.{s}" for s in ("pending", "completed", "expired", "failed")]
    built += [f"receipts.check.{c}" for c in VERIFY_CHECKS]
    built += [f"receipts.attestation_{a}" for a in ("served", "caller_asserted", "none")]
    built += [f"prompts.{prefix}.{value}" for prefix, values in PROMPT_VALUES.items() for value in values]
    built += [
        f"prompts.action_{a}" for a in get_args(PromptLabelMoveRequest.model_fields["action"].annotation)
    ]
    used = {k for k in used if not k.endswith((".", "_"))}  # a prefix ('prompts.action_' ~ a): in `built`
    missing = sorted(k for k in [*used, *built] if k not in catalog("en"))
    assert missing == []


@pytest.mark.parametrize(
    ("query", "cookie", "header", "expected"),
    [
        ("zh", None, "en-US", "zh"),
        (None, "zh", "en-US", "zh"),
        ("fr", "en", "zh-CN", "en"),
        (None, None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        (None, None, "fr-FR, en;q=0.5, zh;q=0.9", "zh"),
        (None, None, "zh;q=0, en", "en"),
        (None, None, None, "en"),
    ],
)
def test_language_choice(query: str | None, cookie: str | None, header: str | None, expected: str) -> None:
    assert choose_language(query, cookie, header) == expected


def test_translator_fills_placeholders_and_shows_unknown_keys() -> None:
    assert Translator("zh")("topup.credited", amount="$5.00") == "已向您的余额充值 $5.00。"
    assert Translator("en")("no.such.key") == "no.such.key"
    assert set(LANGUAGES) == {"en", "zh"}


def test_a_page_loads_under_300_kb_of_assets_all_shipped_with_licences() -> None:
    base = (CONSOLE / "templates" / "base.html").read_text()
    loaded = re.findall(r'(?:src|href)="/console/static/([^"]+)"', base)
    assert loaded
    assert all(name in STATIC_ASSETS for name in loaded)
    assert sum((CONSOLE / "static" / name).stat().st_size for name in loaded) < 300 * 1024
    assert "http" not in "".join(re.findall(r'<script[^>]*src="([^"]+)"', base))  # nothing from a CDN
    assert (CONSOLE / "static" / "LICENSE-htmx.txt").read_text().startswith("Zero-Clause BSD")
