"""The docs pages' own words in each language (the pages' text comes from docs/ and docs/zh/).
The Chinese follows the seed's terms: 快速开始, API 参考, 教程, Cookbook, 中国入口."""

from __future__ import annotations

from batchin.http_api.language import Language

__all__ = ["SECTION_TITLES", "STRINGS"]

# The navigation's sections, in order; a page's section is its folder (top-level pages: guides,
# except the two every reader starts from).
SECTION_TITLES: dict[Language, dict[str, str]] = {
    "en": {
        "start": "Get started",
        "guides": "Guides",
        "tutorials": "Tutorials",
        "cookbook": "Cookbook",
        "reference": "Reference",
    },
    "zh": {
        "start": "快速开始与 API 参考",
        "guides": "指南",
        "tutorials": "教程",
        "cookbook": "Cookbook",
        "reference": "参考",
    },
}

STRINGS: dict[Language, dict[str, str]] = {
    "en": {
        "site": "BatchIn docs",
        "skip": "Skip to the content",
        "nav": "Docs pages",
        "search_label": "Search the docs",
        "search_placeholder": "Search titles and headings",
        "no_results": "No page matches.",
        "results": "{n} results",
        "copy_text": "Copy",
        "copied": "Copied",
        "copy_failed": "Copy failed",
        "copy_label": "Copy this code",
        "markdown": "This page as Markdown",
        "other_language": "中文",
        "other_language_name": "Chinese",
        "untranslated": "",
        "in_english": "",
        "index_title": "BatchIn documentation",
        "index_intro": (
            "BatchIn is one model API for agents and SDKs: an OpenAI-compatible HTTP API and an MCP "
            "server over one service layer, with per-key limits and budgets, an exact credit ledger, "
            "signed audit records and traces on every call. Start with the quick start."
        ),
        "index_agents": (
            "Agents read the same pages as Markdown: add .md to a page's address, or start from "
            "llms.txt, which links them all."
        ),
    },
    "zh": {
        "site": "BatchIn 文档",
        "skip": "跳到正文",
        "nav": "文档页面",
        "search_label": "搜索文档",
        "search_placeholder": "搜索标题与小节",
        "no_results": "没有匹配的页面。",
        "results": "{n} 条结果",
        "copy_text": "复制",
        "copied": "已复制",
        "copy_failed": "复制失败",
        "copy_label": "复制这段代码",
        "markdown": "本页的 Markdown 原文",
        "other_language": "English",
        "other_language_name": "英文",
        "untranslated": "本页尚无中文版，以下为英文原文。",
        "in_english": "英文",
        "index_title": "BatchIn 文档",
        "index_intro": (
            "BatchIn 为智能体和 SDK 提供统一的 Model API：在同一服务层之上同时开放 OpenAI 兼容的 "
            "HTTP API 与 MCP 服务器，每个 API Key 可设置限流与月预算，余额按精确账本结算，"
            "每次调用都有签名的审计记录和 trace。建议从快速开始读起。"
        ),
        "index_agents": (
            "智能体可读取同样内容的 Markdown：在页面地址后加 .md，或从汇总了全部页面链接的 "
            "llms.txt 开始。标注“英文”的页面尚未翻译。"
        ),
    },
}
