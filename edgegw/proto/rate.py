"""A minimum data rate for a request body, counted only while we wait for the client.

An idle timeout alone does not stop a client that sends one byte a second: each
byte restarts it. Kestrel's answer (``MinRequestBodyDataRate``: 240 bytes/s
after a 5 s grace) is taken here: the body must arrive at ``min_rate`` on
average over the time spent waiting for it. Time the gateway spends elsewhere
(a slow upstream taking the body) is not the client's fault and is not counted.

The budget is kept as *credit*, in seconds: it starts at ``grace``, each byte
adds ``1/min_rate`` and each wait spends its length; it never exceeds ``idle``,
so neither a fast start nor a long upload buys a long trickle later: a client
that stops or trickles below the rate is cut off within ``idle`` seconds.

Pure: times come in as arguments.
"""

from __future__ import annotations

import math


class RateFloor:
    """The credit of one request body; see the module docstring.

    Args:
        min_rate: bytes per second a body must average; 0 disables the rate.
        grace: credit at the start, in seconds.
        idle: the longest any one wait may take, and the most credit kept.
    """

    __slots__ = ("_credit", "grace", "idle", "min_rate")

    def __init__(self, min_rate: float, grace: float, idle: float) -> None:
        self.min_rate = min_rate
        self.grace = grace
        self.idle = idle
        self._credit = grace

    def reset(self) -> None:
        """A new body starts with ``grace`` seconds of credit."""
        self._credit = self.grace

    def wait_limit(self) -> float:
        """How long the next wait for the client may take, in seconds."""
        if self.min_rate <= 0:
            return self.idle
        return min(self.idle, self._credit)

    def record(self, waited: float, received: int) -> None:
        """A wait of ``waited`` seconds brought ``received`` bytes."""
        gained = received / self.min_rate if self.min_rate > 0 else math.inf
        self._credit = min(self.idle, self._credit - waited + gained)
