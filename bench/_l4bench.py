"""Shared plumbing for ``bench/tcp`` and ``bench/udp``: processes, ports, iperf3 JSON."""

from __future__ import annotations

import contextlib
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

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PY) if VENV_PY.exists() else sys.executable
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


def harness(listen: int, backend: int, *flags: str) -> contextlib.AbstractContextManager[None]:
    cmd = [PYTHON, HARNESS, "--listen", f"127.0.0.1:{listen}", "--backend", f"127.0.0.1:{backend}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return process([*cmd, *flags], wait_port=listen, env=env)


def temp_file(text: str, suffix: str) -> str:
    fd, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path
