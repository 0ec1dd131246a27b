"""``edgegw echo`` as a user runs it: a process answering JSON on a port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from tests.ports import free_port

pytestmark = pytest.mark.e2e


def test_echo_command_answers_with_the_contract_json() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgegw", "echo", "--listen", f"127.0.0.1:{port}",
         "--name", "pod-1", "--namespace", "team"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "echo did not start"
                time.sleep(0.05)
        with sock:
            sock.sendall(b"GET /a?b=c HTTP/1.1\r\nHost: h.example\r\nX-Multi: 1\r\nX-Multi: 2\r\n"
                         b"Connection: close\r\n\r\n")  # fmt: skip
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    finally:
        proc.terminate()
        proc.wait(10)
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    seen = json.loads(body)
    assert seen == {
        "path": "/a?b=c", "host": "h.example", "method": "GET", "proto": "HTTP/1.1",
        "headers": {"X-Multi": ["1", "2"], "Connection": ["close"]},
        "namespace": "team", "ingress": "", "service": "", "pod": "pod-1",
    }  # fmt: skip
