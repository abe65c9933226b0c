"""Serving: admission (priorities, lanes, concurrency), flow control (per-key and per-region limits,
backpressure), buffered text generation, the inference service behind chat, completions and
responses, metrics, and the public model catalog. May import billing, audit, traces and prompts
(every served call is metered, signed, traced and attributed) and the shared pieces.
"""
