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

    @property
    def endpoints(self) -> str:
        """``--cluster`` value naming every member."""
        return "etcd://" + ",".join(f"{m.host}:{m.client_port}" for m in self.members)

    def start_all(self) -> None:
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
            try:
                with urllib.request.urlopen(member.client_url + "/health", timeout=1) as answer:
                    if json.loads(answer.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"etcd member {member.name} not healthy:\n{self.logs()}")

    def kill(self, member: EtcdMember) -> None:
        if member.process is not None and member.process.poll() is None:
            member.process.send_signal(signal.SIGKILL)
            member.process.wait(10)
        member.process = None

    def stop_all(self) -> None:
        for member in self.members:
            self.kill(member)

    def post(self, member: EtcdMember, path: str, body: object) -> dict[str, object]:
        request = urllib.request.Request(
            member.client_url + path, data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=3) as answer:
            return dict(json.loads(answer.read()))

    def leader(self) -> EtcdMember | None:
        """The member the others follow, asked of each live member."""
        for member in self.members:
            try:
                status = self.post(member, "/v3/maintenance/status", {})
            except OSError:
                continue
            leader_id = status.get("leader")
            if status.get("header", {}).get("member_id") == leader_id:  # type: ignore[attr-defined]
                return member
        return None

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.root.glob("*.log"))
        )
