"""Real etcd members for the tests (Debian's ``etcd-server``), on loopback or in namespaces.

`EtcdRig` starts a cluster of members with ``--pre-vote`` (etcd 3.4's default is off, and a
member that rejoins would then force an election) and waits until every member answers
``/health``. ``prefix`` runs each member under a command (``ip netns exec NS``). With `EtcdTLS`
the members serve clients over TLS only and require a client certificate
(``--client-cert-auth``).
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


@dataclass(frozen=True)
class EtcdTLS:
    """PEM files: the CA (signing both sides), the members' certificate, a client's."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


@dataclass
class EtcdMember:
    name: str
    host: str
    client_port: int
    peer_port: int
    prefix: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = None
    scheme: str = "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

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
    tls: EtcdTLS | None = None

    def __post_init__(self) -> None:
        for member in self.members:
            member.scheme = "https" if self.tls else "http"

    @property
    def endpoints(self) -> str:
        """``--cluster`` value naming every member."""
        scheme = "etcds" if self.tls else "etcd"
        return f"{scheme}://" + ",".join(f"{m.host}:{m.client_port}" for m in self.members)

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
                "--pre-vote", "--logger", "zap", "--log-outputs", "stderr",
                *self._tls_flags(), *self.extra]  # fmt: skip
        log = (self.root / f"{member.name}.log").open("ab")
        member.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def _tls_flags(self) -> list[str]:
        if self.tls is None:
            return []
        return ["--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]  # fmt: skip

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
                context = self.tls.context() if self.tls else None
                with urllib.request.urlopen(url, timeout=1, context=context) as answer:
                    body = answer.read()
            return bool(json.loads(body).get("health") == "true")
        except (OSError, ValueError, subprocess.SubprocessError):
            return False

    def etcdctl(self, *args: str, endpoints: Sequence[EtcdMember] = ()) -> str:
        """``etcdctl ARGS`` against ``endpoints`` (default: every member), from the probe."""
        urls = ",".join(m.client_url for m in endpoints or self.members)
        argv = [*self.probe_prefix, "etcdctl", f"--endpoints={urls}", "--command-timeout=2s"]
        if self.tls is not None:
            argv += [f"--cacert={self.tls.ca}", f"--cert={self.tls.client_cert}",
                     f"--key={self.tls.client_key}"]  # fmt: skip
        argv += args
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
