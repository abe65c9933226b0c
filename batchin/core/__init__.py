"""The service layer: one subpackage per domain, no HTTP or MCP types, no torch.

Each domain imports only the domains listed beside it, plus the shared pieces that sit in this
folder (clock, call context, key permissions, region policy, W3C trace context, write-behind
buffer, durable-worker base, the retention job, site documents, list pages), which import no
domain. No circles,
counting function-level and type-only imports:
tests/test_architecture.py checks this table, and docs/reference/architecture.mdx draws it.

    domain        may import
    batches       serving, media, accounts, billing
    experiments   prompts, serving, media, accounts, billing
    media         serving, billing
    serving       audit, traces, prompts, billing   (every served call is signed, traced, attributed)
    prompts       audit
    accounts      billing
    traces        billing
    audit         —
    webhooks      —
    billing       —
"""
