"""Webhooks: endpoints with sealed signing secrets, SSRF-safe URL checks, Standard Webhooks
signatures and durable, retried deliveries. Imports only the shared pieces of core.
"""
