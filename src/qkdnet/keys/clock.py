"""Clocks: the one place time enters the key management layer (injected, see DESIGN.md)."""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

from qkdnet.errors import ParameterError


@runtime_checkable
class Clock(Protocol):
    """Time in seconds: ``SystemClock`` in services, ``SimulatedClock`` in simulation."""

    def now(self) -> float:
        """Current time, seconds (UNIX epoch for the system clock, simulation time otherwise)."""
        ...


class SystemClock:
    """Wall-clock time, seconds since the UNIX epoch (``time.time``)."""

    def now(self) -> float:
        """Current wall-clock time, seconds."""
        return time.time()


class SimulatedClock:
    """A clock that only moves when told to: simulated time in seconds, starting at ``start_s``."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = float(start_s)
        self._lock = threading.Lock()

    def now(self) -> float:
        """Current simulated time, seconds."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0) and return the new time, seconds."""
        if not (seconds >= 0.0):
            raise ParameterError("seconds", f"time only moves forward; got {seconds!r}")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now_s: float) -> None:
        """Jump to ``now_s`` seconds; it may not be earlier than the current time."""
        with self._lock:
            if now_s < self._now:
                raise ParameterError("now_s", f"time only moves forward; {now_s} < {self._now}")
            self._now = float(now_s)
