"""ClientTrafficPolicy ``http3: {}`` through ``edgegw run``, with a real HTTP/3 client.

The homelab ClientTrafficPolicy (TLS 1.2 minimum, ALPN, tcpKeepalive, client IP
detection and ``http3: {}``) is Accepted; the HTTPS listener's port then also
serves HTTP/3 over QUIC, with the certificate the TCP listener serves. The client
is aioquic's (``tests/h3client.py``): Debian's curl has no HTTP/3. curl over TLS
checks the ``alt-svc`` advertisement and that a route filter and a SecurityPolicy
give HTTP/1.1 and HTTP/3 the same answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trustme

from tests.e2e.conftest import Gateway, SocketServer, curl, http_gateway, wait_for
from tests.e2e.test_https import tls_secret
from tests.h3client import h3_connect
from tests.ports import free_port

pytestmark = pytest.mark.e2e

HOMELAB_CTP = """\
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {{name: homelab, namespace: default}}
spec:
  targetRefs:
  - {{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: https}}
  - {{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: https-b}}
  clientIPDetection:
    xForwardedFor: {{trustedCIDRs: [10.42.0.0/16, 192.168.0.0/16]}}
  tcpKeepalive: {{}}
  tls: {{minVersion: "1.2", alpnProtocols: [h2, http/1.1]}}
{http3}"""


class BodyBackend(SocketServer):
    """HTTP/1.1 backend that reads each body as it comes and answers what it saw."""

    def __init__(self) -> None:
        super().__init__(concurrent=True)
        self.received = 0  # body bytes of the request being read, as they arrive

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(20)
        server = h11.Connection(h11.SERVER)
        while True:
            head, digest, length = None, hashlib.sha256(), 0
            while True:
                event = server.next_event()
                if event is h11.NEED_DATA:
                    data = conn.recv(65536)
                    if not data:
                        return
                    server.receive_data(data)
                elif isinstance(event, h11.Request):
                    head, self.received = event, 0
                elif isinstance(event, h11.Data):
                    digest.update(event.data)
                    length += len(event.data)
                    self.received = length
                elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            assert head is not None
            seen = {
                "path": head.target.decode(),
                "headers": {n.decode(): v.decode() for n, v in head.headers},
                "length": length,
                "sha256": digest.hexdigest(),
            }
            body = json.dumps(seen).encode()
            headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
            conn.sendall(server.send(h11.Response(status_code=200, headers=headers)) or b"")
            conn.sendall(server.send(h11.Data(data=body)) or b"")
            conn.sendall(server.send(h11.EndOfMessage()) or b"")
            if server.our_state is h11.MUST_CLOSE:
                return
            server.start_next_cycle()


def _sha_htpasswd(user: str, password: str) -> str:
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return f"{user}:{{SHA}}{digest}"


def _setup(
    gateway: Gateway, backend: BodyBackend, ca: trustme.CA, *, http3: bool
) -> tuple[int, int]:
    """Two HTTPS listeners on one port with the homelab policy, one elsewhere without it."""
    https, other = free_port(), free_port()
    listeners = f"""\
- name: https
  protocol: HTTPS
  port: {https}
  hostname: a.example.com
  tls: {{certificateRefs: [{{name: cert-a}}]}}
- name: https-b
  protocol: HTTPS
  port: {https}
  hostname: b.example.org
  tls: {{certificateRefs: [{{name: cert-b}}]}}
- name: other
  protocol: HTTPS
  port: {other}
  hostname: a.example.com
  tls: {{certificateRefs: [{{name: cert-a}}]}}
"""
    gateway.service("body", backend)
    gateway.write("gateway.yaml", http_gateway(https, listeners=listeners))
    gateway.write("secret.yaml", tls_secret("cert-a", ca, "a.example.com"))
    gateway.write("secret-b.yaml", tls_secret("cert-b", ca, "b.example.org"))
    gateway.write(
        "route.yaml",
        f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: open, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [a.example.com, b.example.org]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-filtered, value: "yes"}}]}}
    backendRefs: [{{name: body, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: secure, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [a.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /secure}}}}]
    backendRefs: [{{name: body, port: 80}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: users, namespace: default}}
stringData:
  .htpasswd: |
    {_sha_htpasswd("alice", "pw-alice")}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {{name: basic, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: secure}}]
  basicAuth: {{users: {{name: users}}}}
""",
    )
    gateway.write("client.yaml", HOMELAB_CTP.format(http3="  http3: {}\n" if http3 else ""))
    gateway.start()
    status = gateway.resource("ClientTrafficPolicy", "homelab")["status"]
    assert status["ancestors"][0]["conditions"][0]["status"] == "True", status
    return https, other


def _ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / f"ca-{id(ca)}.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _curl(
    port: int, cafile: str, path: str = "/", *args: str, proto: str = "--http1.1"
) -> tuple[int, dict[str, str], str]:
    """curl over TLS (HTTP/1.1, or HTTP/2 with ``proto="--http2"``): status, headers, body."""
    out = curl(
        "-i",
        proto,
        "--cacert",
        cafile,
        "--resolve",
        f"a.example.com:{port}:127.0.0.1",
        *args,
        f"https://a.example.com:{port}{path}",
    )
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


def _udp_bound(port: int) -> bool:
    """Whether something holds UDP ``127.0.0.1:port`` (a bind without SO_REUSEADDR fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def backend() -> Any:
    server = BodyBackend()
    yield server
    server.close()


async def test_http3_serves_routes_filters_policies_and_bodies(
    gateway: Gateway, backend: BodyBackend, ca: trustme.CA, tmp_path: Path
) -> None:
    https, _ = _setup(gateway, backend, ca, http3=True)
    cafile = _ca_file(ca, tmp_path)
    host = f"a.example.com:{https}"
    with trio.fail_after(30):
        async with h3_connect(https, "a.example.com", cafile) as client:
            assert client.terminated is None, client.terminated
            # (1) a GET through the HTTPRoute: the backend's 200 and body
            rsp = await client.request("GET", "/items?x=1", host)
            assert rsp.status == 200, rsp
            seen = json.loads(rsp.body)
            assert seen["path"] == "/items?x=1"
            # (2) the route filter, as over HTTP/1.1
            assert seen["headers"]["x-filtered"] == "yes"
            assert rsp.headers["alt-svc"] == f'h3=":{https}"; ma=86400'
            # (2) the SecurityPolicy (basic auth), as over HTTP/1.1
            denied = await client.request("GET", "/secure", host)
            auth = base64.b64encode(b"alice:pw-alice").decode()
            allowed = await client.request(
                "GET", "/secure", host, [("authorization", f"Basic {auth}")]
            )
            assert (denied.status, allowed.status) == (401, 200)
            # (3) a POST body streams: the backend sees the first part before the rest is sent
            first, rest = os.urandom(600_000), os.urandom(2_400_000)
            sid = client.start("POST", "/upload", host, [("content-type", "x/y")], end=False)
            client.send(sid, first)
            while backend.received < len(first):  # a condition, polled; no fixed sleep
                await trio.sleep(0.01)
            client.send(sid, rest, end=True)
            posted = await client.response(sid)
            assert posted.status == 200
            body = json.loads(posted.body)
            assert body["length"] == len(first) + len(rest)
            assert body["sha256"] == hashlib.sha256(first + rest).hexdigest()
        # the SNI picks the listener and its certificate (the client verifies the name)
        async with h3_connect(https, "b.example.org", cafile) as other:
            assert other.terminated is None, other.terminated
            rsp = await other.request("GET", "/b", f"b.example.org:{https}")
            assert rsp.status == 200
            # a name the listener of the SNI does not serve: 421, as over TCP
            rsp = await other.request("GET", "/b", f"a.example.com:{https}")
            assert rsp.status == 421

    cafile_args = (https, cafile)
    h1_denied = _curl(*cafile_args, "/secure")[0]
    h1_allowed = _curl(*cafile_args, "/secure", "-u", "alice:pw-alice")[0]
    assert (h1_denied, h1_allowed) == (401, 200)
    status, _headers, body = _curl(*cafile_args, "/items?x=1")
    assert status == 200
    assert json.loads(body)["headers"]["x-filtered"] == "yes"
    _, metrics = gateway.admin("/metrics")
    assert b'protocol="h3"' in metrics, metrics.decode()


async def test_alt_svc_only_where_the_policy_has_http3_and_reload_stops_quic(
    gateway: Gateway, backend: BodyBackend, ca: trustme.CA, tmp_path: Path
) -> None:
    https, other = _setup(gateway, backend, ca, http3=True)
    cafile = _ca_file(ca, tmp_path)
    # (4) alt-svc on the policy's HTTPS listener over HTTP/1.1 and HTTP/2, not on the other one
    for proto in ("--http1.1", "--http2"):
        _, headers, _ = _curl(https, cafile, "/", proto=proto)
        assert headers["alt-svc"] == f'h3=":{https}"; ma=86400', proto
        _, headers, _ = _curl(other, cafile, "/", proto=proto)
        assert "alt-svc" not in headers, proto
    assert _udp_bound(https)
    assert not _udp_bound(other)

    # (5) the policy without http3, on live reload: the UDP socket goes, alt-svc too
    generation = gateway.generation()
    gateway.write("client.yaml", HOMELAB_CTP.format(http3=""))
    gateway.wait_generation_after(generation)
    wait_for(lambda: not _udp_bound(https), what="the QUIC socket released")
    # the new tables follow the status at once: wait for them, not for a fixed time
    wait_for(lambda: "alt-svc" not in _curl(https, cafile, "/")[1], what="no alt-svc")

    # and back: HTTP/3 serves again
    generation = gateway.generation()
    gateway.write("client.yaml", HOMELAB_CTP.format(http3="  http3: {}\n"))
    gateway.wait_generation_after(generation)
    with trio.fail_after(20):
        async with h3_connect(https, "a.example.com", cafile) as client:
            rsp = await client.request("GET", "/again", f"a.example.com:{https}")
            assert rsp.status == 200

    # a new certificate in the Secret reaches HTTP/3 too (the client trusts only its CA)
    renewed = trustme.CA()
    generation = gateway.generation()
    gateway.write("secret.yaml", tls_secret("cert-a", renewed, "a.example.com"))
    gateway.wait_generation_after(generation)  # the status first: traffic follows at once
    renewed_file = _ca_file(renewed, tmp_path)
    with trio.fail_after(20):
        while True:  # a condition with a deadline: the first handshake with the new certificate
            async with h3_connect(https, "a.example.com", renewed_file) as client:
                if client.terminated is None:
                    rsp = await client.request("GET", "/", f"a.example.com:{https}")
                    assert rsp.status == 200
                    break
            await trio.sleep(0.05)
        async with h3_connect(https, "a.example.com", cafile) as client:
            assert client.terminated is not None  # the old certificate is gone


async def test_garbage_datagrams_neither_crash_nor_leak(
    gateway: Gateway, backend: BodyBackend, ca: trustme.CA, tmp_path: Path
) -> None:
    https, _ = _setup(gateway, backend, ca, http3=True)
    cafile = _ca_file(ca, tmp_path)
    junk = [
        b"",
        b"\x00",
        os.urandom(40),
        b"\x40" + os.urandom(1300),  # a short header for no connection
        b"\xc0\x00\x00\x00\x01\x08" + os.urandom(1300),  # a v1 Initial, noise after the CID
        b"\xc0\xba\xba\xba\xba\x08" + os.urandom(8) + b"\x08" + os.urandom(1300),  # unknown version
        b"\xc3\x00\x00\x00\x01\x08" + os.urandom(8) + b"\x00\x00\x44\xd0" + os.urandom(1300),
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(50):
            for datagram in junk:
                s.sendto(datagram, ("127.0.0.1", https))
    with trio.fail_after(20):
        async with h3_connect(https, "a.example.com", cafile) as client:
            rsp = await client.request("GET", "/after-junk", f"a.example.com:{https}")
            assert rsp.status == 200
    assert gateway.process is not None
    assert gateway.process.proc.poll() is None

    def connections() -> bytes:
        metrics = gateway.admin("/metrics")[1]
        lines = [ln for ln in metrics.splitlines() if b"connections_active" in ln and b"/udp" in ln]
        return b"\n".join(lines)

    # the one real connection closed, and none was ever opened for the junk
    wait_for(lambda: connections().endswith(b" 0"), what="no QUIC connection left")
    total = gateway.admin("/metrics")[1]
    counted = [ln for ln in total.splitlines() if b"connections_total" in ln and b"/udp" in ln]
    assert counted == [f'edgegw_connections_total{{port="127.0.0.1:{https}/udp"}} 1'.encode()]


async def test_listenerset_https_listener_serves_http3_with_a_gateway_policy(
    gateway: Gateway, backend: BodyBackend, ca: trustme.CA, tmp_path: Path
) -> None:
    """The homelab shape: one Gateway-wide policy, listeners added by a ListenerSet."""
    plain, https = free_port(), free_port()
    gateway.service("body", backend)
    gateway.write(
        "gateway.yaml",
        http_gateway(plain).replace(
            "gatewayClassName: edgegw",
            "gatewayClassName: edgegw\n  allowedListeners: {namespaces: {from: Same}}",
        ),
    )
    gateway.write("secret.yaml", tls_secret("cert-a", ca, "a.example.com"))
    gateway.write(
        "listenerset.yaml",
        f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: apps, namespace: default}}
spec:
  parentRef: {{kind: Gateway, group: gateway.networking.k8s.io, name: gw}}
  listeners:
  - name: https
    protocol: HTTPS
    port: {https}
    hostname: a.example.com
    tls: {{certificateRefs: [{{name: cert-a}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{kind: ListenerSet, group: gateway.networking.k8s.io, name: apps}}]
  rules: [{{backendRefs: [{{name: body, port: 80}}]}}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {{name: homelab, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]
  tls: {{minVersion: "1.2"}}
  http3: {{}}
""",
    )
    gateway.start()
    cafile = _ca_file(ca, tmp_path)
    _, headers, _ = _curl(https, cafile, "/")
    assert headers["alt-svc"] == f'h3=":{https}"; ma=86400'
    with trio.fail_after(20):
        async with h3_connect(https, "a.example.com", cafile) as client:
            assert client.terminated is None, client.terminated
            rsp = await client.request("GET", "/ls", f"a.example.com:{https}")
            assert rsp.status == 200
            assert json.loads(rsp.body)["path"] == "/ls"
    assert not _udp_bound(plain)  # the plain-HTTP listener gets no QUIC socket
