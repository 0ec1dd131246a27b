"""Real etcd members for the tests (Debian's ``etcd-server``), on loopback or in namespaces.

`EtcdRig` starts a cluster of members with ``--pre-vote`` (etcd 3.4's default is off, and a
member that rejoins would then force an election) and waits until every member answers
``/health``. ``prefix`` runs each member under a command (``ip netns exec NS``).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


@dataclass
class EtcdMember:
    name: str
    host: str
    client_port: int
    peer_port: int
    prefix: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"


@dataclass
class EtcdRig:
    root: Path
    members: list[EtcdMember]
    heartbeat_ms: int = 100
    election_ms: int = 1000
    extra: Sequence[str] = field(default_factory=tuple)
    probe_prefix: Sequence[str] = ()
    """Where the test reaches the members from (``ip netns exec NS``); empty: right here."""

    @property
    def endpoints(self) -> str:
        """``--cluster`` value naming every member."""
        return "etcd://" + ",".join(f"{m.host}:{m.client_port}" for m in self.members)

    def start_all(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for member in self.members:
            self.start(member, new=True)
        for member in self.members:
            self.wait_healthy(member)

    def start(self, member: EtcdMember, *, new: bool = False) -> None:
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        argv = [*member.prefix, ETCD, "--name", member.name,
                "--data-dir", str(self.root / member.name),
                "--listen-client-urls", member.client_url,
                "--advertise-client-urls", member.client_url,
                "--listen-peer-urls", member.peer_url,
                "--initial-advertise-peer-urls", member.peer_url,
                "--initial-cluster", cluster,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", self.root.name,
                "--heartbeat-interval", str(self.heartbeat_ms),
                "--election-timeout", str(self.election_ms),
                "--pre-vote", *self.extra]  # fmt: skip
        log = (self.root / f"{member.name}.log").open("ab")
        member.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_healthy(self, member: EtcdMember, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._healthy(member):
                return
            time.sleep(0.05)
        raise AssertionError(f"etcd member {member.name} not healthy:\n{self.logs()}")

    def _healthy(self, member: EtcdMember) -> bool:
        url = member.client_url + "/health"
        try:
            if self.probe_prefix:
                argv = [*self.probe_prefix, "curl", "-s", "--max-time", "1", url]
                body = subprocess.run(argv, capture_output=True, timeout=5, check=False).stdout
            else:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    body = answer.read()
            return bool(json.loads(body).get("health") == "true")
        except (OSError, ValueError, subprocess.SubprocessError):
            return False

    def etcdctl(self, *args: str, endpoints: Sequence[EtcdMember] = ()) -> str:
        """``etcdctl ARGS`` against ``endpoints`` (default: every member), from the probe."""
        urls = ",".join(m.client_url for m in endpoints or self.members)
        argv = [*self.probe_prefix, "etcdctl", f"--endpoints={urls}", "--command-timeout=2s",
                *args]  # fmt: skip
        env = {"ETCDCTL_API": "3", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env)
        return done.stdout

    def leader(self) -> EtcdMember | None:
        """The member the others follow, as the live members report it."""
        live = [m for m in self.members if m.process is not None]
        try:
            statuses = json.loads(self.etcdctl("endpoint", "status", "-w", "json", endpoints=live))
        except ValueError:
            return None
        for entry in statuses:
            status = entry["Status"]
            if status["header"]["member_id"] == status["leader"]:
                return next(m for m in live if m.client_url == entry["Endpoint"])
        return None

    def member_id(self, member: EtcdMember) -> int:
        listed = json.loads(self.etcdctl("member", "list", "-w", "json"))
        return int(next(m["ID"] for m in listed["members"] if m["name"] == member.name))

    def move_leader(self, target: EtcdMember) -> None:
        """Make ``target`` the leader (etcdctl move-leader, sent to the current leader)."""
        leader = self.leader()
        if leader is None or leader is target:
            return
        self.etcdctl("move-leader", format(self.member_id(target), "x"), endpoints=[leader])
        deadline = time.monotonic() + 10
        while self.leader() is not target:
            assert time.monotonic() < deadline, f"leadership did not move to {target.name}"
            time.sleep(0.1)

    def kill(self, member: EtcdMember) -> None:
        if member.process is not None and member.process.poll() is None:
            member.process.send_signal(signal.SIGKILL)
            member.process.wait(10)
        member.process = None

    def stop_all(self) -> None:
        for member in self.members:
            self.kill(member)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.root.glob("*.log"))
        )
