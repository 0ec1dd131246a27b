"""Which listeners serve HTTP/3, and the ``alt-svc`` field that advertises it; pure.

A ClientTrafficPolicy with ``http3: {}`` turns HTTP/3 on for the HTTPS
listeners it attaches to (Envoy Gateway's ``HTTP3Settings``). QUIC is TLS 1.3
only and edgegw's QUIC stack asks for no client certificate, so a listener
whose policy caps TLS below 1.3, or that validates client certificates, keeps
to TCP: advertising HTTP/3 there would let a client skip the certificate check
or the version cap.
"""

from __future__ import annotations

from edgegw import ir

#: How long a client may remember the advertisement, as Envoy Gateway sets it (24 h).
ALT_SVC_MAX_AGE = 86400


def serves_http3(listener: ir.Listener) -> bool:
    """Whether ``listener`` serves HTTP/3 on its port (see the module docstring)."""
    policy, tls = listener.client_policy, listener.tls
    return (
        policy is not None
        and policy.http3
        and listener.protocol == "HTTPS"
        and tls is not None
        and tls.mode == "Terminate"
        and bool(tls.certificates)
        and tls.frontend_validation is None
        and policy.tls_max_version in (None, "1.3")
    )


def alt_svc(listener: ir.Listener) -> bytes | None:
    """The ``alt-svc`` value for responses on ``listener``; None when it has no HTTP/3."""
    if not serves_http3(listener):
        return None
    return b'h3=":%d"; ma=%d' % (listener.port, ALT_SVC_MAX_AGE)
