"""`edgegw l2` on a real (namespaced) LAN: seen and answered from a client, traffic delivered.

The speaker runs as ``edgegw l2`` inside the "gw" namespace and follows a fake admin API on a
unix socket (which works across network namespaces). The "client" namespace watches the wire
with a raw socket, asks with its own ARP and NDP requests, and connects over TCP.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
import trio

from edgegw.proto import arp, ndp

from .conftest import NAMESPACES_MADE, REPO, Lan
from .wire import ask_arp, ask_ndp, capture, gratuitous_arp, packet_socket

pytestmark = pytest.mark.netns

V4 = IPv4Address("192.0.2.100")
V6 = IPv6Address("fd00::100")
PORT = 8080
CONFIG = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: lan, namespace: metallb-system}}
spec: {{addresses: [192.0.2.100-192.0.2.110, "fd00::100-fd00::1ff"]}}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: lan, namespace: metallb-system}}
spec: {{interfaces: [{iface}]}}
"""


class FakeAdmin:
    """The gateway's ``/api/status``, holding whatever addresses the test says."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.addresses: list[str] = []
        self.answered = 0  # status documents served: the speaker's polls

    def body(self) -> bytes:
        gateway = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "web", "namespace": "default", "generation": 1},
            "status": {"addresses": [{"type": "IPAddress", "value": a} for a in self.addresses]},
        }
        return json.dumps({"generation": 1, "errors": [], "resources": [gateway]}).encode()

    async def handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            data += chunk
        body = self.body()
        self.answered += 1
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        # The speaker may give up on an answer (its own timeout, under load) and go: its
        # next poll asks again, and this stub must not fail the test for it.
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(head.encode() + body)

    async def serve(self, *, task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(str(self.path))
        sock.listen()
        await trio.serve_listeners(
            self.handle, [trio.SocketListener(sock)], task_status=task_status
        )


@asynccontextmanager
async def running(argv: list[str]) -> AsyncIterator[trio.Process]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NOTIFY_SOCKET", None)
    process = await trio.lowlevel.open_process(argv, env=env, cwd=str(REPO))
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            with trio.move_on_after(10):
                await process.wait()
            process.kill()
            await process.wait()


@asynccontextmanager
async def gateway_side(lan: Lan, tmp_path: Path) -> AsyncIterator[tuple[FakeAdmin, trio.Process]]:
    """The fake admin API, ``edgegw l2`` and an HTTP server, all on the gw side."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "metallb.yaml").write_text(CONFIG.format(iface=lan.gw_if))
    admin = FakeAdmin(tmp_path / "admin.sock")
    exec_gw = ["ip", "netns", "exec", lan.gw_ns, sys.executable]
    speaker_argv = [*exec_gw, "-m", "edgegw", "l2", "-c", str(tmp_path / "conf")]
    speaker_argv += ["--interface", lan.gw_if, "--admin", f"unix:{admin.path}"]
    http_argv = [*exec_gw, "-m", "http.server", "--bind", "::", str(PORT)]
    async with trio.open_nursery() as nursery:
        await nursery.start(admin.serve)
        async with running(http_argv), running(speaker_argv) as speaker:
            yield admin, speaker
        nursery.cancel_scope.cancel()


def http_get(lan: Lan, family: int, host: str) -> bytes:
    with lan.socket(lan.client_ns, family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect((host, PORT))
        sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        return sock.recv(12)


def http_get_once_reachable(lan: Lan, family: int, host: str) -> bytes:
    """``http_get``, or b"" while the address cannot be reached yet (a route or neighbour
    entry of the client namespace still being set up, which takes longer under load)."""
    try:
        return http_get(lan, family, host)
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED):
            return b""
        raise


async def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Retry a blocking check in a thread until it returns something truthy."""
    with trio.move_on_after(timeout):
        while not (result := await trio.to_thread.run_sync(check)):
            await trio.sleep(0.2)
        return result
    raise AssertionError(f"{check} never held")


def lo_addresses(lan: Lan) -> str:
    return lan.ip(lan.gw_ns, "addr", "show", "dev", "lo")


async def test_ipv4_address_is_announced_answered_delivered_and_released(
    lan: Lan, tmp_path: Path
) -> None:
    garp_sock, ask_sock = packet_socket(lan, arp.ETH_P_ARP), packet_socket(lan, arp.ETH_P_ARP)
    with trio.fail_after(60), garp_sock, ask_sock:
        async with gateway_side(lan, tmp_path) as (admin, speaker):
            # Before the gateway holds it, nobody answers for the address: the speaker has
            # read the empty status twice (so acted on the first) and announces nothing.
            await eventually(lambda: admin.answered >= 2)
            assert await trio.to_thread.run_sync(ask_arp, lan, ask_sock, V4) is None

            admin.addresses = [str(V4)]
            frame = await trio.to_thread.run_sync(capture, garp_sock, gratuitous_arp(V4), 10.0)
            assert frame is not None, "no gratuitous ARP seen"
            announced = arp.parse_frame(frame)
            assert announced is not None
            assert announced.sender_mac == lan.gw_mac
            assert announced.eth_dst == arp.BROADCAST

            answer = await trio.to_thread.run_sync(ask_arp, lan, ask_sock, V4)
            assert answer is not None, "ARP request not answered"
            assert answer.sender_mac == lan.gw_mac
            assert answer.target_mac == lan.client_mac

            reply = await eventually(lambda: http_get_once_reachable(lan, socket.AF_INET, str(V4)))
            assert reply.startswith(b"HTTP/1.0 200")
            assert "192.0.2.100/32" in lo_addresses(lan)

            admin.addresses = []
            await eventually(lambda: ask_arp(lan, ask_sock, V4) is None)
            assert "192.0.2.100" not in lo_addresses(lan)
            with pytest.raises(OSError, match=r"timed out|unreachable|refused"):
                http_get(lan, socket.AF_INET, str(V4))
            assert speaker.returncode is None


async def test_ipv6_address_is_announced_answered_and_delivered(lan: Lan, tmp_path: Path) -> None:
    sock = packet_socket(lan, ndp.ETH_P_IPV6)
    with trio.fail_after(60), sock:
        async with gateway_side(lan, tmp_path) as (admin, _speaker):
            admin.addresses = [str(V6)]

            def unsolicited(frame: bytes) -> bool:
                msg = ndp.parse_frame(frame)
                return isinstance(msg, ndp.NeighborAdvertisement) and not msg.solicited

            frame = await trio.to_thread.run_sync(capture, sock, unsolicited, 10.0)
            assert frame is not None, "no unsolicited neighbour advertisement seen"
            announced = ndp.parse_frame(frame)
            assert isinstance(announced, ndp.NeighborAdvertisement)
            assert announced.target == V6
            assert announced.target_mac == lan.gw_mac
            assert announced.dst_ip == ndp.ALL_NODES

            answer = await trio.to_thread.run_sync(ask_ndp, lan, sock, V6)
            assert isinstance(answer, ndp.NeighborAdvertisement), "NS not answered"
            assert answer.target_mac == lan.gw_mac
            assert answer.dst_ip == IPv6Address("fd00::1")

            reply = await eventually(lambda: http_get_once_reachable(lan, socket.AF_INET6, str(V6)))
            assert reply.startswith(b"HTTP/1.0 200")

            admin.addresses = []
            await eventually(lambda: ask_ndp(lan, sock, V6) is None)


async def test_sigterm_withdraws_everything(lan: Lan, tmp_path: Path) -> None:
    sock = packet_socket(lan, arp.ETH_P_ARP)
    with trio.fail_after(60), sock:
        async with gateway_side(lan, tmp_path) as (admin, speaker):
            admin.addresses = [str(V4), str(V6)]
            assert await eventually(lambda: ask_arp(lan, sock, V4))
            assert "fd00::100/128" in lo_addresses(lan)
            speaker.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                assert await speaker.wait() == 0
            assert await trio.to_thread.run_sync(ask_arp, lan, sock, V4) is None
            addresses = lo_addresses(lan)
            assert "192.0.2.100" not in addresses
            assert "fd00::100" not in addresses


def test_cleanup_leaves_no_namespace_behind() -> None:
    """Run last in this module: every namespace the fixtures created is gone.

    Only this run's namespaces count: other test runs on the machine make their own.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root")
    assert NAMESPACES_MADE, "the tests above made no namespace"
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    listed = {line.split()[0] for line in names.stdout.splitlines() if line.strip()}
    assert listed.isdisjoint(NAMESPACES_MADE)
