"""Limits and trust at the edge: who the client is, and how much it may use.

- `client_address`: behind a reverse proxy every request comes from the proxy. The
  `X-Forwarded-For` header is believed only when the TCP peer is one of
  `server.trusted_proxies` (addresses or CIDR networks); then the right-most address
  that is not itself a trusted proxy is the client (RFC 7239 §5.2 reasoning: entries
  left of the last untrusted hop may be forged by the client).
- `AddressLimiter`: per-address concurrent `/ws` connections, and a token bucket of
  messages per second per connection.
- `admit`: whether a new call of a channel fits: the global `server.max_sessions`,
  the per-channel caps of `server.channel_limits`, and `server.telephony_reserve`
  slots that the browser demo may never take, so phone callers get a line when the
  demo is popular.

Time for the token bucket comes from a `now()` callable (the injected clock).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

TELEPHONY = frozenset({"voximplant", "audiosocket"})
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """`["127.0.0.1", "10.0.0.0/8"]` -> networks; ValueError names a bad entry."""
    out: list[Network] = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"server.trusted_proxies: {entry!r} is not an address or network"
            ) from None
    return tuple(out)


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str:
    """The client's address for limits and logs (see the module docstring)."""
    peer = peer or "unknown"
    if not forwarded_for or not trusted or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain: trust nothing in it
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


class TokenBucket:
    """`rate` tokens a second, up to `burst`; `take()` is False when empty."""

    __slots__ = ("_last", "_now", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._now = now
        self._last = now()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self._now()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class AddressLimiter:
    """Concurrent connections per client address (0 = unlimited)."""

    def __init__(self, max_per_address: int) -> None:
        self.max_per_address = max_per_address
        self.open: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        """Count one more connection of `address`; False (and nothing counted) at the cap."""
        n = self.open.get(address, 0)
        if self.max_per_address and n >= self.max_per_address:
            return False
        self.open[address] = n + 1
        return True

    def release(self, address: str) -> None:
        """One connection of `address` has closed."""
        n = self.open.get(address, 0) - 1
        if n > 0:
            self.open[address] = n
        else:
            self.open.pop(address, None)


@dataclass(frozen=True, slots=True)
class Admission:
    """Capacity rules for new calls (config `server.max_sessions`,
    `server.channel_limits`, `server.telephony_reserve`)."""

    max_sessions: int
    channel_limits: Mapping[str, int]
    telephony_reserve: int = 0

    def admit(self, channel: str, live: Mapping[str, int], pending: int = 0) -> str | None:
        """None when a new `channel` call fits; else why not ("busy", "channel_limit",
        "reserved_for_telephony"). `live`: calls per channel; `pending`: accepted
        connections of this channel that have not started their call yet."""
        total = sum(live.values()) + pending
        if total >= self.max_sessions:
            return "busy"
        cap = self.channel_limits.get(channel, 0)
        if cap and live.get(channel, 0) + pending >= cap:
            return "channel_limit"
        if channel not in TELEPHONY and total >= self.max_sessions - self.telephony_reserve:
            return "reserved_for_telephony"
        return None
