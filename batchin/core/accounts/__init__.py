"""Accounts: users, API keys (issuing, hashing, revoking) and authentication of a bearer secret into a
Principal with its RPM limit applied. May import billing (money, the rate limiter) and the shared
pieces.
"""
