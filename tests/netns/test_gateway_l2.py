"""The whole stack on a namespaced LAN: real ``edgegw run`` and ``edgegw l2``, curl from a client.

In the "gw" namespace: ``edgegw echo`` backends on its loopback, ``edgegw run`` on a config
directory with an IPAddressPool (192.0.2.100-192.0.2.110) and an L2Advertisement for the gw
end of the veth, and ``edgegw l2`` beside it, following the gateway's admin API over a unix
socket. No ``--default-address``: the Gateways carry no ``spec.addresses``, so the pool decides.
From the "client" namespace: ``edgegw status``, a raw socket watching ARP, and curl.

These tests prove the flow CONTRACT.md promises end to end: a Gateway dropped into DIR gets the
lowest free pool address, the status says so, the LAN hears a gratuitous ARP for it, and a
plain curl from another host reaches the backend; deleting the Gateway's file lets the address
go (no ARP answer, curl fails); and addresses stay with their Gateways across a restart.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from edgegw.admin.client import fetch_json
from edgegw.proto import arp

from .conftest import REPO, Lan
from .wire import ask_arp, capture, gratuitous_arp, packet_socket

pytestmark = pytest.mark.netns

FIRST, SECOND = IPv4Address("192.0.2.100"), IPv4Address("192.0.2.101")
PORT = 8080
BACKENDS = {"web": 9001, "api": 9002}

BASE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: edgegw}}
spec: {{controllerName: edgegw.io/gateway-controller}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: lan, namespace: metallb-system}}
spec: {{addresses: [192.0.2.100-192.0.2.110]}}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: lan, namespace: metallb-system}}
spec: {{ipAddressPools: [lan], interfaces: [{iface}]}}
"""

BACKEND = """\
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
"""

GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: edgegw
  listeners: [{{name: http, protocol: HTTP, port: {port}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: {name}}}]
  rules: [{{backendRefs: [{{name: {name}, port: 80}}]}}]
"""


class Stack:
    """The gw side's processes and directories, and the client side's view of them."""

    def __init__(self, lan: Lan, root: Path) -> None:
        self.lan = lan
        self.root = root
        self.config = root / "conf"
        self.state = root / "state"
        self.admin = f"unix:{root / 'admin.sock'}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.config.mkdir()
        base = BASE.format(iface=lan.gw_if)
        base += "".join(BACKEND.format(name=n, port=p) for n, p in BACKENDS.items())
        self.write("base.yaml", base)

    # --- the gw side -------------------------------------------------------------------------

    def write(self, name: str, text: str) -> None:
        """Drop a file into DIR atomically, as an editor or config management would."""
        tmp = self.config / f".{name}.tmp"
        tmp.write_text(textwrap.dedent(text))
        tmp.rename(self.config / name)

    def add_gateway(self, name: str) -> None:
        self.write(f"{name}.yaml", GATEWAY.format(name=name, port=PORT))

    def start(self, name: str, *args: str) -> None:
        """Run ``edgegw ARGS`` in the gw namespace, output to ROOT/NAME.log."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("NOTIFY_SOCKET", None)
        argv = ["ip", "netns", "exec", self.lan.gw_ns, sys.executable, "-m", "edgegw", *args]
        with (self.root / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )

    def start_gateway(self) -> None:
        self.start("gateway", "run", "-c", str(self.config), "--admin", self.admin,
                   "--state-dir", str(self.state), "--drain-timeout", "2")  # fmt: skip
        wait_for(lambda: self.status()["generation"] >= 1, 15, "the gateway's admin API")

    def stop(self, name: str) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')}"
            for log in sorted(self.root.glob("*.log"))
        )

    # --- what anyone can see -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return dict(fetch_json(self.admin, "/api/status"))

    def gateway(self, name: str) -> dict[str, Any] | None:
        for resource in self.status()["resources"]:
            if resource["kind"] == "Gateway" and resource["metadata"]["name"] == name:
                return dict(resource)
        return None

    def addresses(self, name: str) -> list[str]:
        gateway = self.gateway(name)
        held = (gateway or {}).get("status", {}).get("addresses", [])
        return [a["value"] for a in held]

    def client_status(self) -> dict[str, Any]:
        """``edgegw status -o json``, run from the client namespace."""
        argv = ["ip", "netns", "exec", self.lan.client_ns, sys.executable, "-m", "edgegw",
                "status", "--admin", self.admin, "-o", "json"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def curl(self, address: IPv4Address, max_time: float = 3) -> subprocess.CompletedProcess[str]:
        """``curl http://ADDRESS:PORT/`` from the client namespace."""
        argv = ["ip", "netns", "exec", self.lan.client_ns, "curl", "-sS",
                "--max-time", str(max_time), f"http://{address}:{PORT}/"]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=max_time + 10)

    def echo_pod(self, address: IPv4Address) -> str | None:
        """The echo backend's ``pod`` behind ``address``, or None when curl fails."""
        done = self.curl(address, max_time=1)
        if done.returncode != 0:
            return None
        return str(json.loads(done.stdout)["pod"])

    def on_lo(self) -> str:
        return self.lan.ip(self.lan.gw_ns, "addr", "show", "dev", "lo")


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; errors count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def stack(lan: Lan) -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="egw-"))  # short: unix socket paths are limited
    stack = Stack(lan, root)
    try:
        for name, port in BACKENDS.items():
            stack.start(f"echo-{name}", "echo", "--listen", f"127.0.0.1:{port}", "--name", name)
        stack.start_gateway()
        stack.start("l2", "l2", "-c", str(stack.config), "--interface", lan.gw_if,
                    "--admin", stack.admin)  # fmt: skip
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop_all()
        shutil.rmtree(root, ignore_errors=True)


class GarpWatch:
    """Records when the first gratuitous ARP for an address reaches the client."""

    def __init__(self, lan: Lan, address: IPv4Address) -> None:
        self.sock = packet_socket(lan, arp.ETH_P_ARP)
        self.address = address
        self.frame: bytes | None = None
        self.seen_at: float | None = None
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        self.frame = capture(self.sock, gratuitous_arp(self.address), 20.0)
        self.seen_at = time.monotonic()

    def wait(self) -> bytes | None:
        self.thread.join(25)
        self.sock.close()
        return self.frame


def test_dropped_in_gateway_is_reachable_from_the_lan_then_released(stack: Stack) -> None:
    lan = stack.lan
    with packet_socket(lan, arp.ETH_P_ARP) as ask:
        assert stack.gateway("web") is None
        assert ask_arp(lan, ask, FIRST) is None, "someone answers for the address already"
        garp = GarpWatch(lan, FIRST)

        dropped = time.monotonic()
        stack.add_gateway("web")
        wait_for(lambda: stack.addresses("web") == [str(FIRST)], 5, "the address in status")
        in_status = time.monotonic()
        pod = wait_for(lambda: stack.echo_pod(FIRST), 10, f"curl http://{FIRST}:{PORT}/")
        reachable = time.monotonic()
        assert pod == "web"

        frame = garp.wait()
        assert frame is not None, "no gratuitous ARP seen"
        announced = arp.parse_frame(frame)
        assert announced is not None
        assert announced.sender_mac == lan.gw_mac
        assert announced.eth_dst == arp.BROADCAST
        assert garp.seen_at is not None
        report = (
            f"time to status {in_status - dropped:.2f} s, gratuitous ARP "
            f"{garp.seen_at - dropped:.2f} s, curl from the LAN {reachable - dropped:.2f} s"
        )
        print(f"\n[time-to-reachable] {report}")
        assert reachable - dropped < 5, report

        # The client's view: `edgegw status` and a full echo answer over curl.
        web = next(r for r in stack.client_status()["resources"] if r["metadata"]["name"] == "web")
        assert web["status"]["addresses"] == [{"type": "IPAddress", "value": str(FIRST)}]
        programmed = {c["type"]: c for c in web["status"]["conditions"]}["Programmed"]
        assert programmed["status"] == "True"
        done = stack.curl(FIRST)
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        assert body["path"] == "/"
        assert body["host"] == f"{FIRST}:{PORT}"
        assert body["pod"] == "web"
        answer = ask_arp(lan, ask, FIRST)
        assert answer is not None, "ARP request not answered"
        assert answer.sender_mac == lan.gw_mac

        # Deleting the file deletes the Gateway; the address goes with it.
        (stack.config / "web.yaml").unlink()
        wait_for(lambda: stack.gateway("web") is None, 5, "the Gateway to leave status")
        wait_for(lambda: ask_arp(lan, ask, FIRST) is None, 10, "the ARP answers to stop")
        assert str(FIRST) not in stack.on_lo()
        done = stack.curl(FIRST, max_time=2)
        assert done.returncode != 0, done.stdout
        assert stack.processes["gateway"].poll() is None
        assert stack.processes["l2"].poll() is None


def test_addresses_stay_with_their_gateways_across_a_restart(stack: Stack) -> None:
    # "web" comes first and takes the lowest address; "api" sorts before "web", so a fresh
    # allocation of both would give "api" the lowest. Stability means it does not.
    stack.add_gateway("web")
    wait_for(lambda: stack.addresses("web") == [str(FIRST)], 5, "web's address")
    stack.add_gateway("api")
    wait_for(lambda: stack.addresses("api") == [str(SECOND)], 5, "api's address")
    assert stack.addresses("web") == [str(FIRST)]
    assert wait_for(lambda: stack.echo_pod(FIRST), 10, "web over the LAN") == "web"
    assert wait_for(lambda: stack.echo_pod(SECOND), 10, "api over the LAN") == "api"

    assert stack.stop("gateway") == 0
    stack.start_gateway()  # same --state-dir
    assert stack.addresses("web") == [str(FIRST)]
    assert stack.addresses("api") == [str(SECOND)]
    # The speaker kept announcing through the restart (its grace period), so the LAN
    # reaches both Gateways again as soon as the new process has bound its sockets.
    assert wait_for(lambda: stack.echo_pod(FIRST), 10, "web after the restart") == "web"
    assert wait_for(lambda: stack.echo_pod(SECOND), 10, "api after the restart") == "api"
    assert stack.processes["l2"].poll() is None
