"""Routes grouped by resource; each module exports ENDPOINTS."""
