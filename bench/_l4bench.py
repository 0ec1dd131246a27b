"""Shared plumbing for ``bench/tcp`` and ``bench/udp``: processes, ports, iperf3 JSON,
and a real ``edgegw run`` on a config directory written here."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import _venv

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(_venv.ensure())  # edgegw as deployed: see bench/_venv.py
HARNESS = str(ROOT / "bench" / "l4_harness.py")


def free_port() -> int:
    """A port free for both TCP and UDP on loopback (iperf3 uses both on one number)."""
    while True:
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)}")


def wait_tcp(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listening on 127.0.0.1:{port}")


@contextlib.contextmanager
def process(cmd: list[str], wait_port: int | None = None, **kw: object) -> Iterator[None]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]
    try:
        if wait_port is not None:
            wait_tcp(wait_port)
        time.sleep(0.2)
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[0]} exited: {proc.stderr.read().decode()}")
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def iperf3_server(port: int) -> Iterator[None]:
    with process(["iperf3", "-s", "-p", str(port)], wait_port=port):
        yield


def iperf3(port: int, *args: str) -> dict[str, object]:
    out = subprocess.run(
        ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    data: dict[str, object] = json.loads(out.stdout)
    if "error" in data:
        raise SystemExit(f"iperf3: {data['error']}")
    return data


GATEWAY_CLASS = """apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: edgegw}
spec: {controllerName: edgegw.io/gateway-controller}
"""


def gateway(listeners: str) -> str:
    """A GatewayClass and a Gateway ``bench`` with these listeners (YAML flow mappings)."""
    lines = "".join(f"  - {line}\n" for line in listeners.strip().splitlines())
    return GATEWAY_CLASS + (
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
        "metadata: {name: bench, namespace: default}\n"
        f"spec:\n  gatewayClassName: edgegw\n  listeners:\n{lines}"
    )


def backend_service(name: str, port: int, protocol: str = "TCP") -> str:
    """A selector-less Service plus EndpointSlice for 127.0.0.1:port."""
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{ports: [{{name: p, port: {port}, protocol: {protocol}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: p, port: {port}, protocol: {protocol}}}]
endpoints: [{{addresses: ["127.0.0.1"]}}]
"""


def route(kind: str, name: str, service: str, port: int, section: str) -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1alpha2
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: bench, sectionName: {section}}}]
  rules: [{{backendRefs: [{{name: {service}, port: {port}}}]}}]
"""


def wait_ready(admin: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        time.sleep(0.1)
    raise SystemExit("edgegw did not become ready")


@contextlib.contextmanager
def edgegw(config: dict[str, str]) -> Iterator[int]:
    """``edgegw run`` on a temporary config directory holding ``config`` (file name → YAML).

    Yields the admin port once ``/readyz`` answers 200.
    """
    with tempfile.TemporaryDirectory(prefix="edgegw-bench-") as tmp:
        conf = Path(tmp) / "config"
        conf.mkdir()
        for name, text in config.items():
            (conf / name).write_text(text)
        admin = free_port()
        cmd = [PYTHON, "-m", "edgegw", "run", "-c", str(conf), "--admin", f"127.0.0.1:{admin}"]
        cmd += ["--state-dir", str(Path(tmp) / "state"), "--default-address", "127.0.0.1"]
        cmd += ["--log-level", "warning", "--drain-timeout", "1"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with process(cmd, env=env):
            wait_ready(admin)
            yield admin


def harness(listen: int, backend: int, *flags: str) -> contextlib.AbstractContextManager[None]:
    cmd = [PYTHON, HARNESS, "--listen", f"127.0.0.1:{listen}", "--backend", f"127.0.0.1:{backend}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return process([*cmd, *flags], wait_port=listen, env=env)


def temp_file(text: str, suffix: str) -> str:
    fd, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path
