"""Batches: inline and file-form batches as durable rows, the dispatcher that claims tasks under a
lease, runs them through the same serving calls and bills each exactly once with its result. May
import serving, media, billing and the shared pieces; webhooks are reached through a small
protocol (lifecycle.py), not imported.
"""
