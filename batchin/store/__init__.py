"""Persistence: table definitions, the async engine, and migrations."""
