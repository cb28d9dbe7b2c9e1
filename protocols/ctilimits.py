"""The limits of the CTI server and the per-connection request gate (pure: the caller passes ``now``)."""

from __future__ import annotations

from dataclasses import dataclass

from .cticodec import DEFAULT_MAX_LINE

#: Seconds without a rate-limited request that end a flooding streak.
FLOOD_GAP = 1.0


@dataclass(frozen=True)
class CTISettings:
    """The server's limits, checked once (ValueError names the bad one)."""

    heartbeat: float = 15.0
    resume_grace: float = 60.0
    max_line: int = DEFAULT_MAX_LINE
    replay_limit: int = 10_000
    replay_age: float = 300.0
    replay_bytes: int = 4 << 20
    max_pending_bytes: int = 1 << 20
    rate: float = 50.0
    burst: int = 100
    flood_seconds: float = 5.0
    max_bad_lines: int = 10
    max_per_address: int = 20
    max_in_flight: int = 64
    request_timeout: float = 30.0
    close_timeout: float = 5.0
    server_version: str = "ctid/unknown"

    def __post_init__(self) -> None:
        for name in ("heartbeat", "resume_grace", "replay_age", "rate", "flood_seconds", "request_timeout",
                     "close_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CTI setting {name} must be greater than 0, got {getattr(self, name)!r}")
        for name in ("max_line", "replay_limit", "replay_bytes", "max_pending_bytes", "burst", "max_bad_lines",
                     "max_per_address", "max_in_flight"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"CTI setting {name} must be a positive integer, got {value!r}")
        if self.max_line < 1024:
            raise ValueError(f"CTI setting max_line must be at least 1024, got {self.max_line}")

    @property
    def idle_timeout(self) -> float:
        """Seconds of silence from a client after which its connection is closed (3 heartbeats)."""
        return 3 * self.heartbeat


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; pure (the caller passes ``now``)."""

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: int, now: float = 0.0):
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class RequestGate:
    """One connection's request rate: a :class:`TokenBucket`, and how long it has kept going over it.

    :meth:`admit` spends a token for a request line; after a refusal,
    :meth:`flooding` says whether the client has been refused, with no
    pause of :data:`FLOOD_GAP` seconds or more, for ``flood_seconds``.
    """

    __slots__ = ("flood_seconds", "_bucket", "_flood_start", "_last_limited")

    def __init__(self, settings: CTISettings, now: float):
        self.flood_seconds = settings.flood_seconds
        self._bucket = TokenBucket(settings.rate, settings.burst, now)
        self._flood_start = self._last_limited = float("-inf")

    def admit(self, now: float) -> bool:
        """Whether a request arriving ``now`` may run."""
        return self._bucket.take(now)

    def flooding(self, now: float) -> bool:
        """Record a refusal at ``now``; True once refusals have gone on for ``flood_seconds``."""
        if now - self._last_limited > FLOOD_GAP:
            self._flood_start = now
        self._last_limited = now
        return now - self._flood_start >= self.flood_seconds
