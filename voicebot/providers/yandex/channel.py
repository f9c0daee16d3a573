"""gRPC channels to explicit endpoints (no SDK endpoint discovery)."""

from __future__ import annotations

import grpc

# Keepalive so an idle-looking stream survives NAT/LB timeouts; sizes well above one
# audio chunk but bounded.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]


def open_channel(endpoint: str, tls: bool) -> grpc.aio.Channel:
    """One gRPC channel to `endpoint` (TLS or plaintext), keep-alive tuned for long streams."""
    if tls:
        return grpc.aio.secure_channel(
            endpoint, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS
        )
    return grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
