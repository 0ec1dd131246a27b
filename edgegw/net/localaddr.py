"""Which addresses this host has on an interface, asked of the kernel itself.

The gateway binds with IP_FREEBIND so that an address the L2 sidecar takes
later can be bound now; the price is that bind(2) no longer says whether an
address is ours. ``local_addresses`` asks without that option: a UDP socket
binds an address only if it is assigned to an interface (all of 127.0.0.0/8
on Linux's loopback) or is the wildcard. No packet is sent.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable

from edgegw import api


def local_addresses(candidates: Iterable[str]) -> frozenset[str]:
    """The ``candidates`` (IP address strings) that are local to this host."""
    found = set()
    for text in set(candidates):
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(text).version == 6 else socket.AF_INET
        except ValueError:
            continue
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((text, 0))
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL:
                    found.add(text)  # a permission or family problem is not "not ours"
                continue
        found.add(text)
    return frozenset(found)


def static_addresses(gateways: Iterable[api.Gateway]) -> list[str]:
    """Every IPAddress value in the Gateways' ``spec.addresses``."""
    return [
        a.value for gw in gateways for a in gw.spec.addresses if a.type == "IPAddress" and a.value
    ]
