"""Prompts: the per-tenant prompt registry (versions, labels, templates), attribution of a call to a
version, and the write-behind recorder of prompt runs. May import audit (labels moves are signed)
and the shared pieces.
"""
