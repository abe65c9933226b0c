"""Faithful stand-ins for third-party services, served over real sockets so the official SDKs talk to them."""
