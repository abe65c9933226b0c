"""Request and response shapes (pydantic), in OpenAI's names. Import no web or MCP framework."""
