"""The service layer: one module per concept, no HTTP or MCP types."""
