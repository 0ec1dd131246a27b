"""Two network namespaces, "gw" and "client", joined by a veth pair, for the L2 speaker.

Only 192.0.2.0/24 (TEST-NET-1) and fd00::/64 are used, only on the veth between the two
namespaces this fixture creates; nothing leaves them. Both namespaces (and so the veth) are
deleted afterwards, also when a test fails.

Sockets "in" a namespace are made by a short-lived thread that first joins the namespace with
setns(2): a socket belongs to the namespace it was created in, whichever thread uses it later.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CLONE_NEWNET = 0x40000000
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Lan:
    gw_ns: str
    client_ns: str
    gw_if: str
    client_if: str
    gw_mac: bytes
    client_mac: bytes

    def ip(self, ns: str, *args: str) -> str:
        done = subprocess.run(
            ["ip", "-n", ns, *args], check=True, capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def socket(self, ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
        return socket_in_netns(ns, family, kind, proto)


def socket_in_netns(ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    made: list[socket.socket | BaseException] = []

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            made.append(socket.socket(family, kind, proto))
        except BaseException as exc:
            made.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    result = made[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=10)


def _netns_usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    probe = f"edgegw-probe-{uuid.uuid4().hex[:6]}"
    try:
        _run("ip", "netns", "add", probe)
    except (OSError, subprocess.SubprocessError):
        return "ip netns is not available"
    _run("ip", "netns", "del", probe)
    return None


NAMESPACES_MADE: list[str] = []
"""Every namespace ``lan`` created in this run: other runs on the machine have their own."""


@pytest.fixture
def lan() -> Iterator[Lan]:
    reason = _netns_usable()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    gw_ns, client_ns = f"edgegw-gw-{tag}", f"edgegw-cl-{tag}"
    gw_if, client_if = f"eg{tag}g", f"eg{tag}c"
    created: list[str] = []
    try:
        for ns in (gw_ns, client_ns):
            _run("ip", "netns", "add", ns)
            created.append(ns)
            NAMESPACES_MADE.append(ns)
        _run("ip", "link", "add", gw_if, "netns", gw_ns, "type", "veth",
             "peer", "name", client_if, "netns", client_ns)  # fmt: skip
        _setup(gw_ns, gw_if, "192.0.2.2/24", "fd00::2/64")
        _setup(client_ns, client_if, "192.0.2.1/24", "fd00::1/64")
        # Leave ARP for addresses on lo to the speaker alone (see edgegw/l2/host.py).
        _run("ip", "netns", "exec", gw_ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")
        yield Lan(
            gw_ns, client_ns, gw_if, client_if, _mac(gw_ns, gw_if), _mac(client_ns, client_if)
        )
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)


def _setup(ns: str, iface: str, v4: str, v6: str) -> None:
    _run("ip", "-n", ns, "link", "set", "lo", "up")
    _run("ip", "-n", ns, "addr", "add", v4, "dev", iface)
    _run("ip", "-n", ns, "addr", "add", v6, "dev", iface, "nodad")
    _run("ip", "-n", ns, "link", "set", iface, "up")


def _mac(ns: str, iface: str) -> bytes:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{iface}/address"],
        check=True, capture_output=True, text=True, timeout=10,
    ).stdout  # fmt: skip
    return bytes.fromhex(out.strip().replace(":", ""))
