"""``Via`` (RFC 9110 section 7.6.3): mark what passes through, spot what came back.

A forwarding loop (a backend address that is the gateway's own listener) would
otherwise send each request around until some limit (file descriptors, header
size) gives out. Every gateway process names itself once, with a random name,
adds ``Via: 1.1 <name>`` to the requests it forwards and the responses it
relays, and answers a request that already carries its own name with 508 (Loop
Detected): a loop costs one extra hop. The received-protocol is always ``1.1``,
as the loop check needs only the name.

Pure: no I/O.
"""

from __future__ import annotations

import secrets

from edgegw.proto.events import HeaderList, Headers


def instance_via() -> bytes:
    """A fresh ``Via`` element naming one gateway process: ``1.1 edgegw-<12 hex digits>``."""
    return b"1.1 edgegw-" + secrets.token_hex(6).encode()


def passed_through(headers: Headers | HeaderList, via: bytes) -> bool:
    """True when a ``Via`` field of ``headers`` names the same recipient as ``via``.

    Args:
        headers: a request's fields, names lower-case.
        via: this gateway's element, as ``instance_via`` made it.
    """
    name = via.partition(b" ")[2]
    for field, value in headers:
        if field == b"via" and name in value:
            for element in value.split(b","):
                received_by = element.split()[1:2]  # received-by follows the protocol
                if received_by == [name]:
                    return True
    return False
