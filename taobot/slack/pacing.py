"""Pacing of Web API calls, so the bot stays inside Slack's published rate limits.

Slack limits each method per workspace (tiers: Tier 3 is 50+ calls a minute,
Tier 4 100+), and `chat.postMessage` to about one message a second per
channel, short bursts allowed. A 429 still works (the client waits
Retry-After), but a monitoring cycle with hundreds of posts due would
otherwise spend its time in 429s and retries, and could run out of them.

Every call first takes a token from the buckets of its method: one per
(method, channel) and/or one per method. A bucket refills at `rate` tokens a
second up to `burst`. Taking a token reserves the next free moment, so
callers are served first come, first served: posts to one thread keep their
order. Methods have buckets of their own, so an ephemeral answer never waits
behind a backlog of status posts, and `views.open` is not paced at all (its
trigger id expires 3 s after the click). No wait is longer than `max_wait`:
past that the call goes ahead and Slack's Retry-After takes over.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

TIER_3_PER_S = 50 / 60
TIER_4_PER_S = 100 / 60


@dataclass(frozen=True)
class Limit:
    """`rate` tokens a second, at most `burst` saved up."""

    rate: float
    burst: float


@dataclass(frozen=True)
class MethodLimits:
    """The buckets one method draws from. None: not limited on that axis."""

    per_channel: Limit | None = None
    per_method: Limit | None = None


# Kept a little inside Slack's own limits (the fake Slack API enforces the published ones).
DEFAULT_LIMITS: dict[str, MethodLimits] = {
    "chat.postMessage": MethodLimits(per_channel=Limit(1.0, 3)),
    "chat.update": MethodLimits(per_method=Limit(TIER_3_PER_S, 10)),
    "chat.postEphemeral": MethodLimits(per_method=Limit(TIER_4_PER_S, 10)),
    "conversations.replies": MethodLimits(per_method=Limit(TIER_3_PER_S, 10)),
    "conversations.history": MethodLimits(per_method=Limit(TIER_3_PER_S, 10)),
    "conversations.open": MethodLimits(per_method=Limit(TIER_3_PER_S, 10)),
    "views.publish": MethodLimits(per_method=Limit(TIER_4_PER_S, 10)),
}
UNPACED = frozenset({"views.open"})  # a trigger id lives 3 s: never make it wait
DEFAULT_MAX_WAIT_S = 60.0


def scaled(limits: dict[str, MethodLimits], factor: float) -> dict[str, MethodLimits]:
    """The same limits `factor` times faster (tests and benchmarks that must not take minutes)."""

    def scale(limit: Limit | None) -> Limit | None:
        return None if limit is None else Limit(limit.rate * factor, limit.burst)

    return {m: MethodLimits(scale(v.per_channel), scale(v.per_method)) for m, v in limits.items()}


class TokenBucket:
    """A token bucket that hands out reservations: `reserve()` says how long the caller must wait for its token."""

    def __init__(self, limit: Limit, now: float) -> None:
        self.rate = float(limit.rate)
        self.burst = float(limit.burst)
        self.tokens = self.burst
        self.stamp = now

    def reserve(self, now: float) -> float:
        """Take one token (possibly one not there yet); seconds until it is there. The caller holds the lock."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Pacer:
    """Token buckets per (method, channel) and per method; thread-safe. Inject `clock` and `sleep` in tests."""

    def __init__(
        self,
        limits: dict[str, MethodLimits] | None = None,
        *,
        max_wait: float = DEFAULT_MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[str, float, bool], None] | None = None,
    ) -> None:
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self.max_wait = max_wait
        self.clock = clock
        self.sleep = sleep
        self.on_wait = on_wait  # (method, seconds waited, capped): metrics
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str | None], TokenBucket] = {}
        self.waited: dict[str, float] = {}  # total seconds waited, per method
        self.calls: dict[str, int] = {}
        self.capped: dict[str, int] = {}  # waits cut short at max_wait

    def _bucket(self, key: tuple[str, str | None], limit: Limit, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(limit, now)
        return bucket

    def reserve(self, method: str, channel: str | None = None) -> float:
        """Reserve this call's turn; seconds until it may go (0: now). Does not sleep."""
        limits = None if method in UNPACED else self.limits.get(method)
        if limits is None:
            return 0.0
        with self._lock:
            now = self.clock()
            wait = 0.0
            if limits.per_channel is not None and channel:
                wait = max(wait, self._bucket((method, channel), limits.per_channel, now).reserve(now))
            if limits.per_method is not None:
                wait = max(wait, self._bucket((method, None), limits.per_method, now).reserve(now))
            return wait

    def acquire(self, method: str, channel: str | None = None) -> float:
        """Block until this call may go (at most `max_wait`); the seconds waited."""
        wait = self.reserve(method, channel)
        capped = wait > self.max_wait
        wait = min(wait, self.max_wait)
        if wait > 0:
            self.sleep(wait)
        with self._lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            self.waited[method] = self.waited.get(method, 0.0) + wait
            if capped:
                self.capped[method] = self.capped.get(method, 0) + 1
        if self.on_wait is not None:
            self.on_wait(method, wait, capped)
        return wait
