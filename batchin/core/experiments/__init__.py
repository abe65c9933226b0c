"""Experiments: replaying recorded prompt runs against a candidate version, judging the outputs,
and concluding (promote or not) in a durable worker. May import prompts, serving, media, billing
and the shared pieces.
"""
