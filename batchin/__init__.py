"""BatchIn: one model-API platform, an OpenAI-compatible HTTP API and an MCP server over one core."""

__version__ = "0.1.0"
