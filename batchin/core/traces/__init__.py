"""Traces: the spans of each call (builder), their store, OTLP decoding and encoding, and export to
an OTLP collector. May import billing (money, for cost attributes) and the shared pieces.
"""
