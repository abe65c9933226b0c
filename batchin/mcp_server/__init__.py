"""The MCP surface: a FastMCP server over the same core as the HTTP API (tools in batchin/tools,
resources in batchin/resources), served over Streamable HTTP at /v1/mcp and over stdio."""
