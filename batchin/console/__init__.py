"""The web console at /console: server-rendered pages (Jinja2) over the same core services the HTTP
API calls, signed in with a password (server-side sessions) or an API key, in English and Chinese.
A surface like http_api: it parses a form, calls core, renders a page; no business rules here."""

from batchin.console.routes import console_routes

__all__ = ["console_routes"]
