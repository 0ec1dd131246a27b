"""Three gateway nodes, a client and a three-member etcd on one bridge, all in namespaces.

Namespaces (unique per run): ``br`` holds the bridge; ``cl`` is the client (192.0.2.1,
fd00::1); ``n1``..``n3`` are the nodes (192.0.2.11-13, fd00::11-13), each running an etcd
member, an echo backend named after the node, ``edgegw run --cluster`` and
``edgegw l2 --cluster`` on its ``eth0``. Nothing but veths inside these namespaces is created.

etcd runs with the timings README "Two or three boxes" gives for a LAN (heartbeat 50 ms,
election timeout 500 ms); the lease TTL is edgegw's default, 2 s, or ``EDGEGW_TEST_LEASE_TTL``
(1 reproduces the README's figures for ``--lease-ttl 1``).

A node "dies" by kill -9 of its processes with its veth down, and "reboots" in the same
namespace (deleting a namespace right after kill -9 can hang for minutes).

`Watch` runs threads inside the client namespace: every 50 ms a new one asks each address over
HTTP (a new connection each time, so the neighbour cache decides where it goes; a thread per
request, so connections stuck on a dead MAC do not blind the watch), and one sends an
ARP request per IPv4 address with a sender MAC of its own for each request, so every ARP reply
is matched to the one request it answers: two MACs answering one request would be two nodes
announcing at once.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

from edgegw.admin.client import fetch_json
from edgegw.proto import arp, ndp
from tests.etcdrig import EtcdMember, EtcdRig

from .conftest import CLONE_NEWNET, REPO

TTL = int(os.environ.get("EDGEGW_TEST_LEASE_TTL", "2"))  # 1: README's LAN figures
ETCD_HEARTBEAT_MS, ETCD_ELECTION_MS = 50, 500  # README "Two or three boxes": a LAN's timings
PORT = 8080
PROBE_IP = IPv4Address("192.0.2.250")  # never an entry in anyone's neighbour cache
HTTP_STEP = 0.05

CONFIG = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: edgegw}
spec: {controllerName: edgegw.io/gateway-controller}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec: {addresses: [192.0.2.100-192.0.2.110]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan6, namespace: metallb-system}
spec: {addresses: ["fd00::100-fd00::10f"], autoAssign: false}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan, namespace: metallb-system}
spec: {ipAddressPools: [lan, lan6], interfaces: [eth0]}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-1, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{name: http, port: 9001}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
"""

GATEWAY = """\
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default, annotations: {annotations}}}
spec:
  gatewayClassName: edgegw
  listeners: [{{name: http, protocol: HTTP, port: 8080}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: {name}}}]
  rules: [{{backendRefs: [{{name: echo, port: 80}}]}}]
"""


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20).stdout


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


@dataclass
class Node:
    name: str
    ns: str
    ip: str
    ip6: str
    root: Path
    mac: bytes = b""
    etcd: EtcdMember | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def admin(self) -> str:
        return f"unix:{self.root / 'admin.sock'}"


class Cluster:
    """The namespaces, the etcd rig and every node's processes."""

    def __init__(self, tag: str, root: Path) -> None:
        self.tag, self.root = tag, root
        self.bridge_ns, self.client_ns = f"egc-br-{tag}", f"egc-cl-{tag}"
        self.nodes = {
            name: Node(name, f"egc-{name}-{tag}", f"192.0.2.1{i}", f"fd00::1{i}", root / name)
            for i, name in enumerate(("n1", "n2", "n3"), start=1)
        }
        self.config = root / "conf"
        self.created: list[str] = []
        members = []
        for node in self.nodes.values():
            node.etcd = EtcdMember(f"etcd-{node.name}", node.ip, 2379, 2380,
                                   prefix=("ip", "netns", "exec", node.ns))  # fmt: skip
            members.append(node.etcd)
        self.etcd = EtcdRig(root / "etcd", members, ETCD_HEARTBEAT_MS, ETCD_ELECTION_MS,
                            probe_prefix=self.exec_prefix(self.client_ns))  # fmt: skip

    # --- the network ------------------------------------------------------------------------

    @staticmethod
    def exec_prefix(ns: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", ns)

    def build_network(self) -> None:
        for ns in (self.bridge_ns, self.client_ns, *(n.ns for n in self.nodes.values())):
            run("ip", "netns", "add", ns)
            self.created.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        self._plug(self.client_ns, "pcl", "192.0.2.1/24", "fd00::1/64")
        for i, node in enumerate(self.nodes.values(), start=1):
            self._plug(node.ns, f"p{i}", f"{node.ip}/24", f"{node.ip6}/64")
            run("ip", "netns", "exec", node.ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")
            node.mac = self.mac(node.ns)

    def _plug(self, ns: str, port: str, v4: str, v6: str) -> None:
        run("ip", "link", "add", "eth0", "netns", ns, "type", "veth",
            "peer", "name", port, "netns", self.bridge_ns)  # fmt: skip
        run("ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", v4, "dev", "eth0")
        run("ip", "-n", ns, "addr", "add", v6, "dev", "eth0", "nodad")
        run("ip", "-n", ns, "link", "set", "eth0", "up")

    def mac(self, ns: str) -> bytes:
        text = run("ip", "netns", "exec", ns, "cat", "/sys/class/net/eth0/address")
        return bytes.fromhex(text.strip().replace(":", ""))

    def link(self, node: Node, state: str) -> None:
        run("ip", "-n", node.ns, "link", "set", "eth0", state)

    def cut_from_etcd(self, node: Node, cut: bool) -> None:
        """Blackhole the other nodes from ``node``: its etcd member and speaker lose etcd."""
        verb = "add" if cut else "del"
        for other in self.nodes.values():
            if other is not node:
                run("ip", "-n", node.ns, "route", verb, "blackhole", f"{other.ip}/32")

    def teardown(self) -> None:
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=20)

    # --- processes ----------------------------------------------------------------------------

    def write_config(self, gateways: dict[str, str]) -> None:
        self.config.mkdir(exist_ok=True)
        text = CONFIG + "".join(
            GATEWAY.format(name=name, annotations=annotations)
            for name, annotations in gateways.items()
        )
        (self.config / "all.yaml").write_text(text)

    def start(self, node: Node, name: str, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("NOTIFY_SOCKET", None)
        argv = [*self.exec_prefix(node.ns), sys.executable, "-m", "edgegw", *args]
        node.root.mkdir(exist_ok=True)
        with (node.root / f"{name}.log").open("ab") as log:
            node.processes[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )

    def cluster_flags(self, node: Node) -> list[str]:
        return ["--cluster", self.etcd.endpoints, "--node-name", node.name,
                "--lease-ttl", str(TTL)]  # fmt: skip

    def start_node(self, node: Node) -> None:
        """Echo backend, gateway and speaker (the etcd member is started separately)."""
        self.start(node, "echo", "echo", "--listen", "127.0.0.1:9001", "--name", node.name)
        self.start(node, "run", "run", "-c", str(self.config), "--admin", node.admin,
                   "--state-dir", str(node.root / "state"), "--drain-timeout", "1",
                   *self.cluster_flags(node))  # fmt: skip
        self.start(node, "l2", "l2", "-c", str(self.config), "--interface", "eth0",
                   "--admin", node.admin, "--log-level", "debug",
                   *self.cluster_flags(node))  # fmt: skip

    def kill9(self, node: Node, *, etcd: bool = True) -> None:
        """The node dies: every process killed at once, its link down."""
        self.link(node, "down")
        for process in node.processes.values():
            process.send_signal(signal.SIGKILL)
        if etcd and node.etcd is not None:
            self.etcd.kill(node.etcd)
        for process in node.processes.values():
            process.wait(10)
        node.processes.clear()

    def sigterm(self, node: Node, name: str) -> int:
        process = node.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def reboot(self, node: Node) -> None:
        """Bring a dead node back in the same namespace: link, etcd member, processes."""
        self.link(node, "up")
        assert node.etcd is not None
        if node.etcd.process is None:
            self.etcd.start(node.etcd)
        for name in list(node.processes):
            self.sigterm(node, name)
        self.start_node(node)

    def stop_all(self) -> None:
        for node in self.nodes.values():
            for process in node.processes.values():
                process.kill()
            for process in node.processes.values():
                process.wait(10)
            node.processes.clear()
        self.etcd.stop_all()

    def logs(self) -> str:
        parts = [self.etcd.logs()]
        for log in sorted(self.root.glob("n*/*.log")):
            text = log.read_text(errors="replace")[-4000:]
            parts.append(f"--- {log.parent.name}/{log.name}\n{text}")
        return "\n".join(parts)

    # --- what the nodes say -----------------------------------------------------------------

    def status(self, node: Node) -> dict[str, Any]:
        return dict(fetch_json(node.admin, "/api/status", timeout=2))

    def owners(self, via: Node) -> dict[str, str]:
        """Address → announcing node, as ``via``'s gateway reports it."""
        cluster = self.status(via)["cluster"]
        return {a["address"]: a["node"] for a in cluster["addresses"]}

    def live_members(self, via: Node) -> set[str]:
        members = self.status(via)["cluster"]["members"]
        return {m["name"] for m in members if m["healthy"]}

    def node_of(self, mac: bytes) -> str | None:
        return next((n.name for n in self.nodes.values() if n.mac == mac), None)


def join_netns(ns: str) -> None:
    """Move the calling thread into ``ns``; sockets it creates then belong there."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
    finally:
        os.close(fd)


@dataclass
class Sample:
    at: float
    node: str | None


class Watch:
    """The client's continuous view: HTTP answers per address, ARP answers per request."""

    def __init__(self, cluster: Cluster, addresses: list[str]) -> None:
        self.cluster = cluster
        self.addresses = addresses
        self.http: dict[str, list[Sample]] = {a: [] for a in addresses}
        self.arp_answers: dict[int, set[bytes]] = {}
        self.arp_asked: dict[int, str] = {}
        self.garps: list[tuple[float, str, bytes]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._arp_loop, daemon=True)]
        self.threads += [
            threading.Thread(target=self._http_loop, args=(a,), daemon=True) for a in addresses
        ]

    def __enter__(self) -> Watch:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)

    # --- HTTP -------------------------------------------------------------------------------

    def _http_loop(self, address: str) -> None:
        requests: list[threading.Thread] = []
        while not self.stop.wait(HTTP_STEP):  # pacing: one request every HTTP_STEP
            request = threading.Thread(target=self._ask, args=(address,), daemon=True)
            request.start()
            requests = [r for r in requests if r.is_alive()] + [request]
        for request in requests:
            request.join(2)

    def _ask(self, address: str) -> None:
        join_netns(self.cluster.client_ns)
        node = self._get(address)
        self.http[address].append(Sample(time.monotonic(), node))

    def _get(self, address: str) -> str | None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect((address, PORT))
                sock.sendall(f"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            body = data.partition(b"\r\n\r\n")[2]
            return str(json.loads(body)["pod"])
        except (OSError, ValueError, KeyError):
            return None

    # --- ARP --------------------------------------------------------------------------------

    def _arp_loop(self) -> None:
        join_netns(self.cluster.client_ns)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(arp.ETH_P_ARP)) as sock:
            sock.bind(("eth0", arp.ETH_P_ARP))
            counter = 0
            v4 = [IPv4Address(a) for a in self.addresses if ":" not in a]
            while not self.stop.is_set():
                for address in v4:
                    counter += 1
                    mac = b"\x02\xee" + counter.to_bytes(4, "big")
                    self.arp_asked[counter] = str(address)
                    sock.send(arp.build_request(mac, PROBE_IP, address))
                self._receive(sock, time.monotonic() + 0.05)

    def _receive(self, sock: socket.socket, until: float) -> None:
        while (left := until - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                frame = sock.recv(2048)
            except TimeoutError:
                return
            packet = arp.parse_frame(frame)
            if packet is None:
                continue
            if packet.is_gratuitous:
                self.garps.append((time.monotonic(), str(packet.sender_ip), packet.sender_mac))
            elif packet.operation == arp.REPLY and packet.target_mac[:2] == b"\x02\xee":
                request = int.from_bytes(packet.target_mac[2:], "big")
                self.arp_answers.setdefault(request, set()).add(packet.sender_mac)

    # --- what was seen ----------------------------------------------------------------------

    def double_answers(self) -> list[tuple[str, list[str | None]]]:
        """Every ARP request that two nodes answered, with the nodes."""
        return [
            (self.arp_asked[r], [self.cluster.node_of(m) for m in macs])
            for r, macs in sorted(self.arp_answers.items())
            if len(macs) > 1
        ]

    def served_by(self, address: str, node: str, since: float) -> bool:
        return any(s.node == node and s.at >= since for s in self.http[address])

    def gap(self, address: str, old: str, new: str) -> tuple[float, float]:
        """(last answer from ``old``, first answer from ``new`` after it), monotonic times."""
        samples = self.http[address]
        last_old = max(s.at for s in samples if s.node == old)
        first_new = min(s.at for s in samples if s.node == new and s.at > last_old)
        return last_old, first_new

    def first_garp(self, address: str, mac: bytes, since: float) -> float | None:
        return next(
            (at for at, ip, m in self.garps if ip == address and m == mac and at >= since), None
        )


def ndp_answers(cluster: Cluster, address: str, timeout: float = 0.5) -> set[bytes]:
    """Every MAC that answers one neighbour solicitation for ``address`` from the client."""
    found: set[bytes] = set()
    result: list[BaseException] = []

    def work() -> None:
        try:
            join_netns(cluster.client_ns)
            proto = socket.htons(ndp.ETH_P_IPV6)
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, proto) as sock:
                sock.bind(("eth0", ndp.ETH_P_IPV6))
                client_mac = cluster.mac(cluster.client_ns)
                target = ip_address(address)
                assert isinstance(target, IPv6Address)
                sock.send(ndp.build_ns(client_mac, IPv6Address("fd00::1"), target))
                deadline = time.monotonic() + timeout
                while (left := deadline - time.monotonic()) > 0:
                    sock.settimeout(left)
                    try:
                        msg = ndp.parse_frame(sock.recv(2048))
                    except TimeoutError:
                        break
                    if (
                        isinstance(msg, ndp.NeighborAdvertisement)
                        and msg.target == target
                        and msg.solicited
                        and msg.target_mac
                    ):
                        found.add(msg.target_mac)
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout + 5)
    if result:
        raise result[0]
    return found
