"""Running voicebot in production: Prometheus metrics, health and drain, several
worker processes, limits and trust, structured logs.

Everything here sits beside the call path, never on it: a metric update is a dict
lookup and an add, and nothing in this package may block or await inside a call.
"""
