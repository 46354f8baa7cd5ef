"""Dispatch policy: which modem may send now, which idle modem to wake, how long to back off. Pure.

The store applies the policy atomically (`Store.claim_next`); the pool asks these functions before claiming
and when choosing whom to wake. Nothing here sleeps or touches a port.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

STRATEGIES = ("least-used", "round-robin", "health-weighted")


class RateWindow:
    """Sends in the last 60 seconds, for a per-minute limit."""

    def __init__(self, times: list[float] | None = None, span: float = 60.0):
        self.span = span
        self.times: deque[float] = deque(sorted(times or []))

    def add(self, moment: float) -> None:
        self.times.append(moment)

    def wait(self, limit: int | None, now: float, needed: int = 1) -> float:
        """0 when `needed` more sends fit the limit now, else the seconds until they do."""
        while self.times and self.times[0] <= now - self.span:
            self.times.popleft()
        if not limit:
            return 0.0
        if len(self.times) + needed <= limit:
            return 0.0
        if needed > limit:  # a message longer than a minute's allowance goes out once the window is empty
            return 0.0 if not self.times else self.times[-1] + self.span - now
        excess = len(self.times) + needed - limit
        return max(0.0, self.times[excess - 1] + self.span - now)


@dataclass
class QuotaState:
    quota_day: int | None
    quota_month: int | None
    sent_day: int
    day_key: str | None
    sent_month: int
    month_key: str | None


def quota_block(state: QuotaState, now: float) -> tuple[str, float] | None:
    """None when the SIM's daily and monthly quotas allow a send; else (which quota, seconds until it resets)."""
    local = time.localtime(now)
    day = time.strftime("%Y-%m-%d", local)
    month = time.strftime("%Y-%m", local)
    used_day = state.sent_day if state.day_key == day else 0
    used_month = state.sent_month if state.month_key == month else 0
    if state.quota_month is not None and used_month >= state.quota_month:
        return "month", _seconds_until_next_month(local, now)
    if state.quota_day is not None and used_day >= state.quota_day:
        return "day", _seconds_until_midnight(local, now)
    return None


def _seconds_until_midnight(local: time.struct_time, now: float) -> float:
    midnight = time.mktime((local.tm_year, local.tm_mon, local.tm_mday + 1, 0, 0, 0, 0, 0, -1))
    return max(1.0, midnight - now)


def _seconds_until_next_month(local: time.struct_time, now: float) -> float:
    year, month = (local.tm_year + 1, 1) if local.tm_mon == 12 else (local.tm_year, local.tm_mon + 1)
    return max(1.0, time.mktime((year, month, 1, 0, 0, 0, 0, 0, -1)) - now)


def retry_delay(attempt: int, base: float = 5.0, ceiling: float = 600.0) -> float:
    """Exponential backoff: base, 2 x base, 4 x base, ... capped at `ceiling` seconds."""
    return min(ceiling, base * (2 ** max(0, attempt - 1)))


@dataclass
class Candidate:
    """An idle modem as the strategy sees it."""

    key: int
    sent_today: int = 0
    signal_dbm: int | None = None
    error_rate: float = 0.0       # recent failed sends / attempts
    delivery_rate: float = 1.0    # delivered / reported
    order: int = 0                # position in configuration order


@dataclass
class RoundRobin:
    last: int = -1
    seen: list[int] = field(default_factory=list)


def health_score(candidate: Candidate) -> float:
    """Higher is better: signal (−113..−51 dBm mapped to 0.05..1), few send errors (squared, so a failing modem
    ranks below a merely weak one), and a good delivery rate."""
    signal = 0.5 if candidate.signal_dbm is None else min(1.0, max(0.05, (candidate.signal_dbm + 113) / 62))
    success = 1.0 - min(1.0, candidate.error_rate)
    return signal * success * success * max(0.05, candidate.delivery_rate)


def choose(candidates: list[Candidate], strategy: str, count: int, state: RoundRobin | None = None) -> list[int]:
    """The keys of up to `count` idle modems to wake, best first, by `strategy`."""
    if not candidates or count <= 0:
        return []
    if strategy == "round-robin":
        ordered = sorted(candidates, key=lambda c: c.order)
        state = state or RoundRobin()
        start = next((i for i, c in enumerate(ordered) if c.order > state.last), 0)
        ordered = ordered[start:] + ordered[:start]
        picked = ordered[:count]
        state.last = picked[-1].order
        return [c.key for c in picked]
    if strategy == "health-weighted":
        ordered = sorted(candidates, key=lambda c: (-health_score(c), c.sent_today, c.order))
    else:  # least-used
        ordered = sorted(candidates, key=lambda c: (c.sent_today, c.order))
    return [c.key for c in ordered[:count]]
