"""Reloads, bad files, deletion, status and shutdown of a real ``edgegw run``."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import yaml

from tests.e2e.conftest import (
    ROOT,
    Echo,
    Gateway,
    Port,
    edgegw_cmd,
    free_port,
    http_gateway,
    request,
    wait_for,
)

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["{host}"]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: "{path}"}}}}]
    backendRefs: [{{name: app, port: 80}}]
"""


def serving(port: int, host: str, path: str = "/") -> bool:
    return request(port, path, host=host)[0] == 200


def test_change_is_live_within_a_second_and_bad_file_keeps_last_good(
    gateway: Gateway, echoes: dict[str, Echo]
) -> None:
    port = free_port()
    gateway.service("app", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("r1.yaml", ROUTE.format(name="r1", host="one.example.com", path="/"))
    gateway.start()
    assert serving(port, "one.example.com")

    written = time.monotonic()
    gateway.write("r2.yaml", ROUTE.format(name="r2", host="two.example.com", path="/"))
    wait_for(lambda: serving(port, "two.example.com"), timeout=5, what="r2 live")
    assert time.monotonic() - written < 1.0

    # A broken edit: the error names file, line and field; the last good r1 keeps serving.
    gen = gateway.generation()
    gateway.write("r1.yaml", ROUTE.format(name="r1", host="one.example.com", path="no-slash"))
    status = gateway.wait_generation_after(gen)
    errors = [e for e in status["errors"] if e["file"] == "r1.yaml"]
    assert errors, status["errors"]
    assert errors[0]["line"] == 8
    assert errors[0]["field"] == "spec.rules[0].matches[0].path.value"
    assert "start with" in errors[0]["message"]
    assert serving(port, "one.example.com", "/anything")

    # Deleting a file removes its resources.
    gen = gateway.generation()
    (gateway.config / "r2.yaml").unlink()
    gateway.wait_generation_after(gen)
    wait_for(lambda: request(port, "/", host="two.example.com")[0] == 404, what="r2 gone")


def test_status_document_and_status_file(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    gateway.service("app", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("r1.yaml", ROUTE.format(name="r1", host="one.example.com", path="/"))
    gateway.start()

    gw = gateway.resource("Gateway", "gw")
    assert gw["metadata"]["generation"] == 1
    conds = {c["type"]: c for c in gw["status"]["conditions"]}
    assert conds["Accepted"]["status"] == "True"
    assert conds["Programmed"]["status"] == "True"
    assert conds["Programmed"]["observedGeneration"] == 1
    assert {"type": "IPAddress", "value": "127.0.0.1"} in gw["status"]["addresses"]
    listener = gw["status"]["listeners"][0]
    assert listener["attachedRoutes"] == 1
    parent = gateway.resource("HTTPRoute", "r1")["status"]["parents"][0]
    assert parent["controllerName"] == "edgegw.io/gateway-controller"
    assert parent["parentRef"]["kind"] == "Gateway"
    assert parent["parentRef"]["namespace"] == "default"

    generation = gateway.generation()  # status.yaml follows within moments, off the loop
    wait_for(
        lambda: (
            yaml.safe_load((gateway.state / "status.yaml").read_text())["generation"] == generation
        ),
        what="status.yaml of the current generation",
    )

    table = subprocess.run(
        edgegw_cmd("status", "--admin", f"127.0.0.1:{gateway.admin_port}"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert "gw" in table
    assert "r1" in table
    assert "127.0.0.1" in table

    # A spec change bumps the generation; observedGeneration follows.
    gen = gateway.generation()
    gateway.write("r1.yaml", ROUTE.format(name="r1", host="one.example.com", path="/v2"))
    gateway.wait_generation_after(gen)
    r1 = gateway.resource("HTTPRoute", "r1")
    assert r1["metadata"]["generation"] == 2
    assert r1["status"]["parents"][0]["conditions"][0]["observedGeneration"] == 2

    assert serving(port, "one.example.com", "/v2/x")
    code, metrics = gateway.admin("/metrics")
    assert code == 200
    assert b'edgegw_config_reloads_total{result="success"}' in metrics
    labels = b'listener="default/gw/http",route="default/r1",backend="default/app:80",code="2xx"'
    assert b"edgegw_http_requests_total{" + labels + b"}" in metrics
    assert b'edgegw_http_request_duration_seconds_count{listener="default/gw/http"' in metrics
    assert f'edgegw_connections_total{{port="127.0.0.1:{port}"}}'.encode() in metrics
    idle = f'edgegw_connections_active{{port="127.0.0.1:{port}"}} 0'.encode()
    wait_for(lambda: idle in gateway.admin("/metrics")[1], what="connections closed")


def test_port_conflict_between_gateways_is_reported(
    gateway: Gateway, echoes: dict[str, Echo]
) -> None:
    port = free_port()
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("gateway-b.yaml", http_gateway(port, name="gw-b").split("---\n", 1)[1])
    gateway.start()
    listener = gateway.resource("Gateway", "gw-b")["status"]["listeners"][0]
    programmed = {c["type"]: c for c in listener["conditions"]}["Programmed"]
    assert (programmed["status"], programmed["reason"]) == ("False", "PortUnavailable")


def test_sigterm_drains_requests_in_flight(gateway: Gateway, tmp_path: Path) -> None:
    slow_port = free_port()
    release, arrived = threading.Event(), threading.Event()
    server = socket.create_server(("127.0.0.1", slow_port))

    def slow_backend() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        arrived.set()
        release.wait(10)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")
        conn.close()

    threading.Thread(target=slow_backend, daemon=True).start()

    port = free_port()
    gateway.service("app", Port(slow_port))
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("r1.yaml", ROUTE.format(name="r1", host="one.example.com", path="/"))
    gateway.start()

    result: dict[str, object] = {}

    def client() -> None:
        result["response"] = request(port, "/", host="one.example.com")

    thread = threading.Thread(target=client)
    thread.start()
    assert arrived.wait(10), "the request never reached the backend"
    assert gateway.process is not None
    gateway.process.proc.send_signal(signal.SIGTERM)
    # no longer accepting new connections
    wait_for(lambda: _refused(port), timeout=3, what="listener closed")
    release.set()
    thread.join(10)
    assert result["response"][0] == 200  # type: ignore[index]
    assert result["response"][2] == b"slow"  # type: ignore[index]
    assert gateway.process.proc.wait(10) == 0
    server.close()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_reload_under_traffic_fails_no_request(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    gateway.service("app", [echoes["a"], echoes["b"]])
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("r1.yaml", ROUTE.format(name="r1", host="one.example.com", path="/"))
    gateway.start()

    stop = threading.Event()
    outcomes: list[int] = []

    def traffic() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                conn.request("GET", "/", headers={"Host": "one.example.com"})
                resp = conn.getresponse()
                resp.read()
                outcomes.append(resp.status)
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                outcomes.append(-1)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(50):
        gen = gateway.generation()
        gateway.write(
            f"extra-{i % 5}.yaml",
            ROUTE.format(name=f"extra-{i % 5}", host=f"x{i}.example.com", path="/"),
        )
        gateway.wait_generation_after(gen)
    stop.set()
    for t in threads:
        t.join()
    assert len(outcomes) > 100
    failures = [o for o in outcomes if o != 200]
    assert failures == [], f"{len(failures)} of {len(outcomes)} failed"


def test_check_command(tmp_path: Path) -> None:
    ok = subprocess.run(
        edgegw_cmd("check", "-c", str(ROOT / "config")), capture_output=True, text=True, cwd=ROOT
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "route.yaml").write_text(ROUTE.format(name="r", host="h.example.com", path="x"))
    result = subprocess.run(
        edgegw_cmd("check", "-c", str(bad)), capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 1
    assert "route.yaml:8" in result.stdout + result.stderr
    doc = subprocess.run(
        edgegw_cmd("check", "-c", str(bad), "-o", "json"), capture_output=True, text=True, cwd=ROOT
    )
    assert json.loads(doc.stdout)["errors"][0]["file"] == "route.yaml"


def _listener(name: str, port: int) -> str:
    return f"- {{name: {name}, protocol: HTTP, port: {port}}}\n"


def test_listeners_come_and_go_with_reloads(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    first, second = free_port(), free_port()
    gateway.service("app", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(first, listeners=_listener("one", first)))
    gateway.write("r1.yaml", ROUTE.format(name="r1", host="one.example.com", path="/"))
    gateway.start()
    assert _refused(second)

    gen = gateway.generation()
    both = _listener("one", first) + _listener("two", second)
    gateway.write("gateway.yaml", http_gateway(first, listeners=both))
    assert not gateway.wait_generation_after(gen)["errors"]
    wait_for(lambda: serving(second, "one.example.com"), what="second listener")

    gen = gateway.generation()
    gateway.write("gateway.yaml", http_gateway(first, listeners=_listener("one", first)))
    gateway.wait_generation_after(gen)
    wait_for(lambda: _refused(second), what="second listener closed")
    assert serving(first, "one.example.com")


def test_admin_on_a_unix_socket(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "gateway.yaml").write_text(http_gateway(free_port()))
    sock = tmp_path / "admin.sock"
    proc = subprocess.Popen(
        edgegw_cmd(
            "run",
            "-c",
            str(config),
            "--admin",
            f"unix:{sock}",
            "--state-dir",
            str(tmp_path / "state"),
            "--default-address",
            "127.0.0.1",
        ),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        status = wait_for(
            lambda: (
                (
                    r := subprocess.run(
                        edgegw_cmd("status", "--admin", f"unix:{sock}", "-o", "json"),
                        capture_output=True,
                        text=True,
                        cwd=ROOT,
                    )
                ).returncode
                == 0
                and r.stdout
            ),
            what="status over the unix socket",
        )
        kinds = {r["kind"] for r in json.loads(status)["resources"]}
        assert {"GatewayClass", "Gateway"} <= kinds
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def test_workers_share_the_listeners(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    gateway.service("app", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("r1.yaml", ROUTE.format(name="r1", host="one.example.com", path="/"))
    gateway.start("--workers", "2")  # ready once the first worker serves

    def listening() -> list[str]:
        return subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.splitlines()

    # one SO_REUSEPORT socket per worker, the second bound soon after the first
    wait_for(lambda: len(listening()) == 2, timeout=10, what="both workers listening")
    assert all(request(port, "/", host="one.example.com")[0] == 200 for _ in range(20))
    assert gateway.stop() == 0


def _access_lines(gateway: Gateway, marker: str) -> list[str]:
    assert gateway.process is not None
    return [line for line in gateway.process.output().splitlines() if marker in line]


def test_access_log_lines_text_and_json(gateway: Gateway, echoes: dict[str, Echo]) -> None:
    port = free_port()
    gateway.service("app", echoes["a"])
    gateway.write("gateway.yaml", http_gateway(port))
    gateway.write("r1.yaml", ROUTE.format(name="r1", host="one.example.com", path="/"))
    gateway.start()
    assert request(port, "/seen-in-text", host="one.example.com")[0] == 200
    assert request(port, "/seen-404", host="nowhere.example.com")[0] == 404
    served, missed = wait_for(
        lambda: len(found := _access_lines(gateway, "/seen-")) == 2 and found, what="2 lines"
    )
    assert " INFO edgegw.access: 127.0.0.1 default/gw/http " in served
    assert '"GET /seen-in-text" 200 ' in served
    assert "route=default/r1 backend=default/app:80 upstream=127.0.0.1:" in served
    assert '"GET /seen-404" 404 ' in missed
    assert "route=- backend=-" in missed
    assert gateway.stop() == 0

    gateway.start("--log-format", "json")
    assert request(port, "/seen-in-json", host="one.example.com")[0] == 200
    line = wait_for(lambda: _access_lines(gateway, "/seen-in-json"), what="a JSON line")[0]
    entry = json.loads(line)
    assert entry["logger"] == "edgegw.access"
    assert entry["level"] == "info"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/seen-in-json", 200)
    assert entry["route"] == "default/r1"
    assert entry["backend"] == "default/app:80"
    assert entry["time"].endswith("Z")
    assert entry["duration_ms"] >= 0
    assert gateway.stop() == 0

    gateway.start("--log-level", "warning")
    assert request(port, "/seen-quiet", host="one.example.com")[0] == 200
    assert gateway.stop() == 0  # the access log is flushed on the way out
    assert not _access_lines(gateway, "/seen-quiet")
