"""Billing: the integer money unit, the reservation ledger and its two backends, the metered-call
wrapper every paid call uses, RPM rate limiters (in memory and Redis), top-ups and usage reports.
The bottom domain: imports only the shared pieces of core.
"""
