"""Audit (VaaS): Ed25519-signed receipts over the RFC 8785 canonical JSON of each call, the RFC 6962
transparency log they are appended to, offline verification and energy estimates. Imports only the
shared pieces of core.
"""
