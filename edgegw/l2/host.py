"""Make an announced address deliverable on this host, and undo it on release.

Announcing an address only brings its frames to our interface; the kernel still drops packets
for an address that is not local. We add each address to the loopback device, as a /32 (IPv4)
or /128 (IPv6), with the ``ip`` command:

- on ``lo`` and not on the LAN interface, so that it never becomes a source address for the
  host's own outgoing traffic on that interface and adds no prefix route there;
- Linux delivers packets for any local address whatever interface they arrive on (the weak
  host model), so the address on ``lo`` is enough for the gateway's sockets;
- with the default ``arp_ignore=0`` the kernel also answers ARP for it, on every interface;
  set ``net.ipv4.conf.all.arp_ignore=1`` to leave ARP to the speaker alone, so that only the
  interfaces an L2Advertisement selects answer. For IPv6 the kernel never answers neighbour
  solicitations for an address on another device, so the speaker always does.

IPv4 addresses carry the label ``lo:edgegw``, which marks them as ours: at start the speaker
removes those a crashed predecessor left behind. An address that was already on the host
before we added it is never removed by us. The ``ip`` command rather than a netlink codec keeps
this module small; it needs CAP_NET_ADMIN, which the ``ip`` child inherits as an ambient
capability under systemd.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from edgegw.pools import IPAddress

log = logging.getLogger(__name__)

DEVICE = "lo"
LABEL = "lo:edgegw"


class HostAddressError(Exception):
    """``ip`` refused to add or remove an address; the message is its stderr."""


@dataclass(slots=True)
class LocalAddresses:
    """The addresses this process made local, so that it removes only those."""

    ip_command: str = "ip"
    owned: set[IPAddress] = field(default_factory=set)

    async def add(self, address: IPAddress) -> None:
        """Make ``address`` local; an address the host already has is left as it is.

        Raises:
            HostAddressError: ``ip`` failed for another reason (typically no CAP_NET_ADMIN).
        """
        code, err = await self._ip("add", address)
        if code == 0:
            self.owned.add(address)
        elif "File exists" in err:
            log.info("%s is already on this host; leaving it in place", address)
        else:
            raise HostAddressError(f"ip addr add {address}: {err.strip()}")

    async def remove(self, address: IPAddress) -> None:
        """Remove ``address`` if this process added it; a vanished address is fine."""
        if address not in self.owned:
            return
        self.owned.discard(address)
        code, err = await self._ip("del", address)
        if code != 0 and "Cannot assign" not in err:
            log.warning("ip addr del %s: %s", address, err.strip())

    async def remove_all(self) -> None:
        for address in sorted(self.owned, key=lambda a: (a.version, int(a))):
            await self.remove(address)

    async def remove_leftovers(self) -> None:
        """Delete IPv4 addresses labelled ``lo:edgegw`` that an earlier run did not remove."""
        result = await trio.run_process(
            [self.ip_command, "-4", "addr", "flush", "dev", DEVICE, "label", LABEL],
            check=False,
            capture_stdout=True,
            capture_stderr=True,
        )
        if result.returncode != 0:
            log.warning("cannot flush %s: %s", LABEL, result.stderr.decode(errors="replace"))

    async def _ip(self, verb: str, address: IPAddress) -> tuple[int, str]:
        prefix = 32 if address.version == 4 else 128
        argv = [self.ip_command, f"-{address.version}", "addr", verb, f"{address}/{prefix}"]
        argv += ["dev", DEVICE]
        if address.version == 4:
            argv += ["label", LABEL]
        result = await trio.run_process(argv, check=False, capture_stdout=True, capture_stderr=True)
        return result.returncode, result.stderr.decode(errors="replace")
