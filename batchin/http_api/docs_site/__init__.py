"""The MDX docs as HTML pages at /docs and /zh/docs (routes in http_api/routes/docs_pages.py)."""
