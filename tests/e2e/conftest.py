"""End-to-end harness: real ``edgegw run`` and ``edgegw echo`` processes on loopback.

Each test gets a fresh config directory, free ports and its own processes,
and talks to them the way a user would: curl, and Python's http.client.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port as free_port  # re-exported for the e2e tests

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
            result = predicate()
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` now."""
    with socket.create_connection(("127.0.0.1", port), 0.2):
        return True


def edgegw_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgegw", *args]


class Process:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            args, stdout=self._log_file, stderr=subprocess.STDOUT, cwd=ROOT
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")


class SocketServer:
    """A TCP server on 127.0.0.1 for backends a test writes itself.

    Each accepted connection goes to ``handle`` (then is closed), on the
    accepting thread, or on a thread of its own when ``concurrent``.
    """

    def __init__(self, *, concurrent: bool = False) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._concurrent = concurrent
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.connections += 1
            if self._concurrent:
                threading.Thread(target=self._handle_then_close, args=(conn,), daemon=True).start()
            else:
                self._handle_then_close(conn)

    def _handle_then_close(self, conn: socket.socket) -> None:
        with conn:
            self.handle(conn)

    def close(self) -> None:
        """Stop accepting, and only then give the descriptor back.

        Shutdown wakes the thread blocked in ``accept``; the descriptor is
        closed once that thread is gone. Closed first, its number could go to
        another test's listening socket while the thread was between reading
        it and calling ``accept`` (seen under load: the thread took a later
        fixture's connection, whose ``serve_forever`` then blocked for good).
        """
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)
        self.sock.close()


class Port:
    """A backend known only by its port (a server the test runs itself)."""

    def __init__(self, port: int) -> None:
        self.port = port


class Echo:
    """An ``edgegw echo`` backend."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        self.port = free_port()
        self.process = Process(
            edgegw_cmd("echo", "--listen", f"127.0.0.1:{self.port}", "--name", name),
            tmp / f"echo-{name}.log",
        )
        wait_for(lambda: accepts(self.port), what=f"echo {name}")


class Gateway:
    """An ``edgegw run`` on a temporary config directory."""

    def __init__(self, tmp: Path, address: str = "127.0.0.1") -> None:
        self.tmp = tmp
        self.config = tmp / "config"
        self.config.mkdir()
        self.state = tmp / "state"
        self.address = address  # --default-address
        self.admin_port = free_port()
        self.process: Process | None = None

    # config --------------------------------------------------------------------------------
    def write(self, name: str, text: str) -> Path:
        path = self.config / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(textwrap.dedent(text))
        tmp.rename(path)
        return path

    def service(
        self,
        name: str,
        backends: Any,
        *,
        namespace: str = "default",
        port: int = 80,
        app_protocol: str | None = None,
        protocol: str = "TCP",
        annotations: dict[str, str] | None = None,
    ) -> None:
        """A selector-less Service plus one EndpointSlice per backend (anything with ``.port``)."""
        listed = backends if isinstance(backends, list) else [backends]
        extra = f", appProtocol: {app_protocol}" if app_protocol else ""
        meta = f", annotations: {json.dumps(annotations)}" if annotations else ""
        docs = [
            "apiVersion: v1\nkind: Service\n"
            f"metadata: {{name: {name}, namespace: {namespace}{meta}}}\n"
            f"spec: {{ports: [{{name: http, port: {port}, protocol: {protocol}{extra}}}]}}\n"
        ]
        docs += [
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
            f"metadata: {{name: {name}-{i}, namespace: {namespace}, "
            f"labels: {{kubernetes.io/service-name: {name}}}}}\n"
            "addressType: IPv4\n"
            f"ports: [{{name: http, port: {b.port}, protocol: {protocol}}}]\n"
            'endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]\n'
            for i, b in enumerate(listed)
        ]
        self.write(f"svc-{namespace}-{name}.yaml", "---\n".join(docs))

    # process -------------------------------------------------------------------------------
    def start(self, *extra: str) -> None:
        args = edgegw_cmd(
            "run",
            "-c",
            str(self.config),
            "--admin",
            f"127.0.0.1:{self.admin_port}",
            "--state-dir",
            str(self.state),
            "--default-address",
            self.address,
            "--drain-timeout",
            "5",
            *extra,
        )
        self.process = Process(args, self.tmp / "edgegw.log")
        try:
            wait_for(lambda: self.admin("/readyz")[0] == 200, timeout=15, what="readyz")
        except AssertionError:
            raise AssertionError("gateway not ready:\n" + self.process.output()) from None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        return self.process.stop(sig)

    def admin(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def status(self) -> dict[str, Any]:
        code, body = self.admin("/api/status")
        assert code == 200, body
        return dict(json.loads(body))

    def generation(self) -> int:
        return int(self.status()["generation"])

    def wait_generation_after(self, generation: int) -> dict[str, Any]:
        return dict(
            wait_for(lambda: (s := self.status())["generation"] > generation and s, what="a reload")
        )

    def resource(self, kind: str, name: str, namespace: str | None = "default") -> dict[str, Any]:
        for res in self.status()["resources"]:
            meta = res["metadata"]
            if res["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
                return dict(res)
        raise KeyError((kind, namespace, name))


def request(
    port: int,
    path: str = "/",
    *,
    host: str = "example.com",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request through the gateway with http.client."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def echoed(body: bytes | str) -> dict[str, Any]:
    """The echo backend's JSON, with header names lower-cased (it sends them canonical)."""
    doc = dict(json.loads(body))
    doc["headers"] = {k.lower(): v for k, v in doc["headers"].items()}
    return doc


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


GATEWAY_CLASS = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: edgegw}
spec: {controllerName: edgegw.io/gateway-controller}
"""


def http_gateway(port: int, *, name: str = "gw", listeners: str | None = None) -> str:
    listeners = (
        listeners
        or f"""\
      - name: http
        protocol: HTTP
        port: {port}
        allowedRoutes: {{namespaces: {{from: All}}}}
"""
    )
    return (
        GATEWAY_CLASS
        + f"""\
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: edgegw
  listeners:
{textwrap.indent(textwrap.dedent(listeners), "    ")}"""
    )


@pytest.fixture
def echoes(tmp_path: Path) -> Iterator[dict[str, Echo]]:
    started: dict[str, Echo] = {}

    class Factory(dict[str, Echo]):
        def __missing__(self, name: str) -> Echo:
            echo = self[name] = started[name] = Echo(name, tmp_path)
            return echo

    yield Factory()
    for echo in started.values():
        echo.process.stop()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path)
    yield gw
    if gw.process is not None and gw.process.proc.poll() is None:
        gw.stop()


@pytest.fixture(autouse=True)
def _edgegw_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
