"""The OpenAI-compatible HTTP surface: thin routes over core."""
