"""BackendTrafficPolicy ``faultInjection``: which requests wait, and which are answered.

Envoy's fault filter runs before CORS and every auth filter (Envoy Gateway's
filter order), so ``net/guard.py`` asks here first. Each of delay and abort
is drawn on its own against its percentage; a delayed request waits, then is
aborted or goes on. Pure: the caller supplies the random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgegw import ir

_GRPC_CONTENT_TYPE = (b"content-type", b"application/grpc")


@dataclass(frozen=True, slots=True)
class FaultOutcome:
    """``delay`` seconds to wait (0: none); ``status`` to answer with (0: go on)."""

    delay: float = 0.0
    status: int = 0
    grpc_status: int | None = None

    def answer_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers of an abort by ``grpcStatus``: HTTP 200 carrying the gRPC status."""
        if self.grpc_status is None:
            return []
        return [
            _GRPC_CONTENT_TYPE,
            (b"grpc-status", b"%d" % self.grpc_status),
            (b"grpc-message", b"fault filter abort"),
        ]


NO_FAULT = FaultOutcome()


def inject(fault: ir.FaultInjection, delay_draw: float, abort_draw: float) -> FaultOutcome:
    """The fault for one request; draws are uniform in [0, 1)."""
    delay = fault.delay if fault.delay and delay_draw < fault.delay_fraction else 0.0
    aborts = abort_draw < fault.abort_fraction
    if aborts and fault.abort_grpc_status is not None:
        return FaultOutcome(delay, 200, fault.abort_grpc_status)
    if aborts and fault.abort_status is not None:
        return FaultOutcome(delay, fault.abort_status)
    return FaultOutcome(delay) if delay else NO_FAULT
