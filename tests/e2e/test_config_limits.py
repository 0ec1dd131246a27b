"""A config directory cannot hurt the gateway: alias bombs, FIFOs, and reloads of many files."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.e2e.conftest import (
    Echo,
    Gateway,
    edgegw_cmd,
    free_port,
    http_gateway,
    request,
    wait_for,
)
from tests.unit.test_config_limits import billion_laughs


def _route(name: str, path: str, service: str = "svc") -> str:
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
    backendRefs: [{{name: {service}, port: 80}}]
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _errors_for(gateway: Gateway, file: str) -> list[str]:
    return [e["message"] for e in gateway.status()["errors"] if e["file"] == file]


def _serving(gateway: Gateway, port: int, echoes: dict[str, Echo]) -> None:
    gateway.service("svc", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("route.yaml", _route("app", "/app"))


def test_billion_laughs_is_an_error_and_the_gateway_stays_small_and_stoppable(
    gateway: Gateway, echoes: dict[str, Echo]
) -> None:
    port = free_port()
    _serving(gateway, port, echoes)
    gateway.start()
    assert gateway.process is not None
    pid = gateway.process.proc.pid
    before = _rss_mb(pid)
    gateway.write("route.yaml", billion_laughs())  # replaces a good file: its version stays
    wait_for(lambda: _errors_for(gateway, "route.yaml"), what="the error for route.yaml")
    assert _errors_for(gateway, "route.yaml") == ["YAML aliases expand past 100,000 nodes"]
    assert request(port, "/app")[0] == 200
    assert _rss_mb(pid) - before < 50
    started = time.monotonic()
    assert gateway.stop() == 0
    assert time.monotonic() - started < 5


def test_check_refuses_billion_laughs_at_once(tmp_path: Path) -> None:
    (tmp_path / "laughs.yaml").write_text(billion_laughs())
    started = time.monotonic()
    result = subprocess.run(
        edgegw_cmd("check", "-c", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "laughs.yaml:6: YAML aliases expand past 100,000 nodes" in result.stderr


def test_a_fifo_blocks_neither_check_nor_run(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    _serving(gateway, port, echoes)
    os.mkfifo(gateway.config / "y.yaml")
    (gateway.config / "gone.yaml").symlink_to(gateway.config / "nowhere.yaml")
    result = subprocess.run(
        edgegw_cmd("check", "-c", str(gateway.config)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "warning: y.yaml: a FIFO, not a regular file; skipped" in result.stderr
    assert "warning: gone.yaml: a dangling symlink; skipped" in result.stderr
    assert result.returncode == 0
    gateway.start()
    warnings = {(w["file"], w["message"]) for w in gateway.status()["warnings"]}
    assert ("y.yaml", "a FIFO, not a regular file; skipped") in warnings
    generation = gateway.generation()
    gateway.write("route2.yaml", _route("later", "/later"))  # later changes still apply
    gateway.wait_generation_after(generation)
    wait_for(lambda: request(port, "/later")[0] == 200, what="the later route")


def _poll_healthz(port: int, stop: threading.Event, worst: list[float]) -> None:
    """Ask /healthz every 10 ms, a new connection each time (as a health checker does)."""
    while not stop.is_set():
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b"ok\n"
        finally:
            conn.close()
        worst[0] = max(worst[0], time.monotonic() - started)
        stop.wait(0.01)


def test_a_reload_of_thousands_of_files_does_not_stall_healthz(
    gateway: Gateway, echoes: dict[str, Echo], tmp_path: Path
) -> None:
    port = free_port()
    _serving(gateway, port, echoes)
    gateway.start()
    staging = tmp_path / "staging"
    staging.mkdir()
    for i in range(3000):
        (staging / f"r{i:05}.yaml").write_text(_route(f"r{i}", f"/p{i}"))
    stop, worst = threading.Event(), [0.0]
    poller = threading.Thread(target=_poll_healthz, args=(gateway.admin_port, stop, worst))
    poller.start()
    try:
        generation = gateway.generation()
        staging.rename(gateway.config / "routes")
        assert gateway.process is not None
        wait_for(
            lambda: "reload 2 " in gateway.process.output() if gateway.process else False,
            timeout=120,
            what="the big reload",
        )
        wait_for(lambda: request(port, "/p2999")[0] == 200, what="the last route")
        wait_for(  # and keep polling while the status file is written
            lambda: "name: r2999" in (gateway.state / "status.yaml").read_text(),
            timeout=60,
            what="status.yaml with every route",
        )
    finally:
        stop.set()
        poller.join()
    assert gateway.generation() > generation
    assert worst[0] < 1.0, f"/healthz waited {worst[0] * 1000:.0f} ms"
    assert gateway.stop(signal.SIGTERM) == 0
