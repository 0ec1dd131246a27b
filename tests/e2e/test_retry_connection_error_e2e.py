"""HTTPRouteRetryConnectionError through ``edgegw run``: resets count against retry.attempts.

The backend plays the upstream test's echo server with ``succeedAfter``: it
reads each request and resets the connection (RST, no answer) until it has
seen that request's ``uuid`` ``succeedAfter`` times, then answers 200 and
keeps the connection alive. So the gateway's first try of a new request
usually goes out on a pooled keep-alive connection, the case where a reset
used to buy a free, uncounted resend.
"""

from __future__ import annotations

import socket
import struct
import threading
import uuid
from collections import Counter
from urllib.parse import parse_qs, urlsplit

from tests.e2e.conftest import GATEWAY_CLASS, Gateway, Port, SocketServer, free_port, request


class ResettingBackend(SocketServer):
    """Keep-alive HTTP/1.1 that resets the first ``succeedAfter`` tries of each uuid."""

    def __init__(self) -> None:
        super().__init__(concurrent=True)
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def handle(self, conn: socket.socket) -> None:
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                data = conn.recv(65536)
                if not data:
                    return
                pending += data
            head, _, pending = pending.partition(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            query = parse_qs(urlsplit(target).query)
            key = query.get("uuid", [""])[0]
            with self.lock:
                self.seen[key] += 1
                tries = self.seen[key]
            if tries <= int(query.get("succeedAfter", ["0"])[0]):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closed by the caller with linger 0: a reset
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


def route_doc(port: int, backend: int) -> str:
    return (
        GATEWAY_CLASS
        + f"""\
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: same-namespace}}
spec:
  gatewayClassName: edgegw
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: retries-connection-error}}
spec:
  parentRefs: [{{name: same-namespace}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /retry/no-status-code-attempts-3}}}}]
    retry: {{attempts: 3, backoff: 1ms}}
    backendRefs: [{{name: infra-backend-v3, port: 8080}}]
"""
    )


def test_httproute_retry_connection_error(gateway: Gateway) -> None:
    backend = ResettingBackend()
    try:
        port = free_port()
        gateway.service("infra-backend-v3", Port(backend.port), port=8080)
        gateway.write("route.yaml", route_doc(port, backend.port))
        gateway.start()
        path = "/retry/no-status-code-attempts-3"

        def probe(succeed_after: int) -> int:
            key = uuid.uuid4().hex
            status, _, _ = request(port, f"{path}?succeedAfter={succeed_after}&uuid={key}")
            assert backend.seen[key] == min(succeed_after + 1, 4), backend.seen[key]
            return status

        for _ in range(3):  # warm: later first tries go out on pooled connections
            assert probe(0) == 200
        for _ in range(3):
            assert probe(2) == 200  # two resets, two of the three retries
            assert probe(4) in (500, 503)  # four resets: one try and three retries, all spent
    finally:
        backend.close()
