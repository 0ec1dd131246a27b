"""``edgegw run`` speaks systemd's notify protocol on a real NOTIFY_SOCKET."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Gateway, free_port, http_gateway


def _messages(sock: socket.socket, until: str, timeout: float = 15) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if any(until in m.split("\n") for m in seen[-1:]):
            return seen
    raise AssertionError(f"no {until!r} in {seen}")


def test_ready_reloading_stopping(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    gateway.write("gateway.yaml", http_gateway(free_port()))
    gateway.start()

    ready = _messages(sock, "READY=1")
    assert any("STATUS=generation 1" in m for m in ready), ready

    assert gateway.process is not None
    gateway.process.proc.send_signal(signal.SIGHUP)
    reload = _messages(sock, "READY=1")
    assert any("RELOADING=1" in m.split("\n") for m in reload), reload
    assert any("MONOTONIC_USEC=" in m for m in reload), reload

    gateway.process.proc.send_signal(signal.SIGTERM)
    assert _messages(sock, "STOPPING=1")
    assert gateway.process.proc.wait(10) == 0
    sock.close()
