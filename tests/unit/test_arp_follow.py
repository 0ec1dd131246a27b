"""`edgegw l2` following a gateway: a fake admin server over real HTTP, a fake actuator.

The fake records what the real one would do to ``lo`` and the speakers; the raw-socket side
is covered by tests/netns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
import trio

from edgegw.l2.announcer import Action, AddLocal, Release, RemoveLocal, Take
from edgegw.l2.run import Follower, follow
from edgegw.l2.sources import StatusUnavailable, fetch_status

POOLS = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec: {addresses: [192.0.2.100-192.0.2.110]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan, namespace: metallb-system}
spec: {ipAddressPools: [lan], interfaces: [eth0]}
"""


def status_with(*addresses: str) -> dict[str, Any]:
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "web", "namespace": "default", "generation": 1},
        "status": {"addresses": [{"type": "IPAddress", "value": a} for a in addresses]},
    }
    return {"generation": 1, "errors": [], "resources": [gateway]}


class FakeAdmin:
    """A tiny admin API: answers GET /api/status with whatever `status` is now."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = status_with()
        self.scope = trio.CancelScope()
        self.requests = 0

    async def handle(self, stream: trio.abc.Stream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            data += chunk
        assert data.startswith(b"GET /api/status HTTP/1.1\r\n")
        self.requests += 1
        body = json.dumps(self.status).encode()
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        )
        await stream.send_all(head.encode() + b"Connection: close\r\n\r\n" + body)
        await stream.aclose()

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]],
    ) -> None:
        with self.scope:
            await trio.serve_listeners(self.handle, listeners, task_status=task_status)


class FakeActuator:
    def __init__(self) -> None:
        self.log: list[Action] = []
        self.taken: set[tuple[str, str]] = set()
        self.local: set[str] = set()

    async def apply(self, action: Action) -> None:
        self.log.append(action)
        if isinstance(action, AddLocal):
            self.local.add(str(action.address))
        elif isinstance(action, RemoveLocal):
            self.local.discard(str(action.address))
        elif isinstance(action, Take):
            self.taken.add((action.interface, str(action.address)))
        else:
            self.taken.discard((action.interface, str(action.address)))


async def wait_until(check: Callable[[], bool]) -> None:
    while not check():
        await trio.sleep(0.01)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "metallb.yaml").write_text(POOLS)
    return tmp_path


async def start_admin(nursery: trio.Nursery, admin: FakeAdmin, port: int = 0) -> int:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    await nursery.start(admin.serve, listeners)
    return int(listeners[0].socket.getsockname()[1])


async def test_announcements_follow_the_gateway_status(config_dir: Path) -> None:
    admin, actuator = FakeAdmin(), FakeActuator()
    admin.status = status_with("192.0.2.100", "203.0.113.5")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await start_admin(nursery, admin)
            follower = Follower(config_dir, ["eth0", "eth1"], f"127.0.0.1:{port}", actuator)
            await nursery.start(
                lambda task_status: follow(follower, poll_interval=0.02, task_status=task_status)
            )
            # Already announced when `follow` reports it has started.
            assert actuator.log == [
                AddLocal(ip_address("192.0.2.100")),
                Take("eth0", ip_address("192.0.2.100")),
            ]
            admin.status = status_with("192.0.2.101")
            await wait_until(lambda: actuator.taken == {("eth0", "192.0.2.101")})
            assert actuator.local == {"192.0.2.101"}
            assert Release("eth0", ip_address("192.0.2.100")) in actuator.log
            nursery.cancel_scope.cancel()
    # Cancelled (as on SIGTERM): everything withdrawn.
    assert actuator.taken == set()
    assert actuator.local == set()


async def test_gateway_restart_keeps_addresses_for_the_grace_period(config_dir: Path) -> None:
    admin, actuator = FakeAdmin(), FakeActuator()
    admin.status = status_with("192.0.2.100")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await start_admin(nursery, admin)
            follower = Follower(config_dir, ["eth0"], f"127.0.0.1:{port}", actuator, grace=1.0)
            await nursery.start(
                lambda task_status: follow(follower, poll_interval=0.02, task_status=task_status)
            )
            last_seen = follower.last_answer  # the grace period runs from the last answer
            admin.scope.cancel()  # the gateway goes away
            await trio.sleep(0.5)
            assert actuator.taken == {("eth0", "192.0.2.100")}
            await wait_until(lambda: not actuator.taken)
            assert trio.current_time() - last_seen >= 1.0
            assert actuator.local == set()
            # It comes back on the same port: announced again.
            admin.scope = trio.CancelScope()
            await start_admin(nursery, admin, port)
            await wait_until(lambda: actuator.taken == {("eth0", "192.0.2.100")})
            nursery.cancel_scope.cancel()


async def test_status_over_a_unix_socket(tmp_path: Path) -> None:
    admin = FakeAdmin()
    admin.status = status_with("192.0.2.7")
    path = tmp_path / "admin.sock"
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(admin.serve, [trio.SocketListener(sock)])
            status = await fetch_status(f"unix:{path}")
            nursery.cancel_scope.cancel()
    assert status["resources"][0]["status"]["addresses"][0]["value"] == "192.0.2.7"


async def test_unreachable_or_broken_gateway_is_reported(tmp_path: Path) -> None:
    with trio.fail_after(10):
        with pytest.raises(StatusUnavailable):
            await fetch_status(f"unix:{tmp_path / 'nobody'}")

        async def not_json(stream: trio.abc.Stream) -> None:
            await stream.receive_some(4096)
            await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, not_json, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            with pytest.raises(StatusUnavailable, match="503"):
                await fetch_status(f"127.0.0.1:{port}")
            nursery.cancel_scope.cancel()
