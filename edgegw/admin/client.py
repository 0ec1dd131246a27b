"""``edgegw status``: read a running gateway's ``/api/status`` and print it.

The table mirrors ``kubectl get gateway,httproute``: what people already read
every day, so "is my route attached?" needs no new vocabulary.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

from edgegw.admin.server import parse_admin_address

ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute")
POLICY_KINDS = ("ClientTrafficPolicy", "BackendTrafficPolicy", "SecurityPolicy")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self.unix_path))
        self.sock = sock


def fetch_json(admin: str, path: str, timeout: float = 5.0) -> Any:
    """GET ``path`` from the admin API at ``admin`` (HOST:PORT or unix:/path)."""
    address = parse_admin_address(admin)
    conn: http.client.HTTPConnection
    if isinstance(address, Path):
        conn = _UnixHTTPConnection(address, timeout)
    else:
        conn = http.client.HTTPConnection(address[0], address[1], timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"{path}: HTTP {response.status}")
        return json.loads(body)
    finally:
        conn.close()


def print_status(admin: str, *, output: str = "table") -> int:
    """Print the status of the gateway at ``admin``; 1 when it cannot be reached."""
    try:
        document = fetch_json(admin, "/api/status")
    except OSError as exc:
        print(f"edgegw status: cannot reach the gateway at {admin}: {exc}", file=sys.stderr)
        return 1
    print(render(document, output), end="")
    return 0


def render(document: dict[str, Any], output: str) -> str:
    """The status document as ``table``, ``yaml`` or ``json``."""
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    if output == "yaml":
        return str(yaml.safe_dump(document, sort_keys=False))
    return render_table(document)


def _condition(status: dict[str, Any], kind: str) -> str:
    for cond in status.get("conditions", ()):
        if cond.get("type") == kind:
            reason = cond.get("reason", "")
            return f"{cond.get('status')}" + (
                f" ({reason})" if cond.get("status") != "True" else ""
            )
    return "Unknown"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines) + "\n"


def _gateway_rows(resources: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for res in resources:
        if res.get("kind") != "Gateway":
            continue
        meta, status = res["metadata"], res.get("status", {})
        addresses = ",".join(a["value"] for a in status.get("addresses", ())) or "<none>"
        listeners = len(status.get("listeners", ()))
        rows.append(
            [
                meta.get("namespace") or "",
                meta["name"],
                addresses,
                str(listeners),
                _condition(status, "Accepted"),
                _condition(status, "Programmed"),
            ]
        )
    return rows


def _listener_set_rows(resources: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for res in resources:
        if res.get("kind") != "ListenerSet":
            continue
        meta, status = res["metadata"], res.get("status", {})
        rows.append(
            [
                meta.get("namespace") or "",
                meta["name"],
                str(len(status.get("listeners", ()))),
                _condition(status, "Accepted"),
                _condition(status, "Programmed"),
            ]
        )
    return rows


def _route_rows(resources: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for res in resources:
        if res.get("kind") not in ROUTE_KINDS:
            continue
        meta = res["metadata"]
        for parent in res.get("status", {}).get("parents", ()) or [{}]:
            ref = parent.get("parentRef", {})
            section = f"/{ref['sectionName']}" if ref.get("sectionName") else ""
            kind = "ListenerSet " if ref.get("kind") == "ListenerSet" else ""
            rows.append(
                [
                    res["kind"],
                    meta.get("namespace") or "",
                    meta["name"],
                    f"{kind}{ref.get('namespace', '')}/{ref.get('name', '<none>')}{section}",
                    _condition(parent, "Accepted"),
                    _condition(parent, "ResolvedRefs"),
                ]
            )
    return rows


def _certificate_rows(resources: list[dict[str, Any]]) -> list[list[str]]:
    """Like ``kubectl get certificate -o wide`` (cert-manager's columns)."""
    rows = []
    for res in resources:
        if res.get("kind") != "Certificate":
            continue
        meta, status = res["metadata"], res.get("status", {})
        issuer = status.get("issuerRef", {})
        rows.append(
            [
                meta.get("namespace") or "",
                meta["name"],
                _condition(status, "Ready"),
                status.get("secretName", ""),
                f"{issuer.get('kind', '')}/{issuer.get('name', '')}" if issuer else "",
                status.get("notAfter", "-"),
                status.get("renewalTime", "-"),
            ]
        )
    return rows


def _policy_rows(resources: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for res in resources:
        if res.get("kind") not in POLICY_KINDS:
            continue
        meta = res["metadata"]
        for ancestor in res.get("status", {}).get("ancestors", ()):
            ref = ancestor.get("ancestorRef", {})
            section = f"/{ref['sectionName']}" if ref.get("sectionName") else ""
            overridden = _condition(ancestor, "Overridden")
            rows.append(
                [
                    res["kind"],
                    meta.get("namespace") or "",
                    meta["name"],
                    f"{ref.get('namespace', '')}/{ref.get('name', '')}{section}",
                    _condition(ancestor, "Accepted"),
                    "True" if overridden.startswith("True") else "",
                ]
            )
    return rows


def render_table(document: dict[str, Any]) -> str:
    """Gateways, ListenerSets, then routes per parent, then config errors, like ``kubectl get``."""
    resources = document.get("resources", [])
    out = [
        _table(
            ["NAMESPACE", "GATEWAY", "ADDRESSES", "LISTENERS", "ACCEPTED", "PROGRAMMED"],
            _gateway_rows(resources),
        ),
        "\n",
    ]
    listener_sets = _listener_set_rows(resources)
    if listener_sets:
        header = ["NAMESPACE", "LISTENERSET", "LISTENERS", "ACCEPTED", "PROGRAMMED"]
        out += [_table(header, listener_sets), "\n"]
    out += [
        _table(
            ["KIND", "NAMESPACE", "NAME", "PARENT", "ACCEPTED", "RESOLVEDREFS"],
            _route_rows(resources),
        ),
    ]
    certificates = _certificate_rows(resources)
    if certificates:
        header = ["NAMESPACE", "CERTIFICATE", "READY", "SECRET", "ISSUER", "NOT AFTER", "RENEWAL"]
        out += ["\n", _table(header, certificates)]
    policies = _policy_rows(resources)
    if policies:
        header = ["KIND", "NAMESPACE", "NAME", "ANCESTOR", "ACCEPTED", "OVERRIDDEN"]
        out += ["\n", _table(header, policies)]
    health = [
        [
            h["cluster"],
            h["endpoint"],
            _yes(h["healthy"]),
            h.get("active") or "-",
            _yes(h["ejected"]),
        ]
        for h in document.get("backendHealth", ())
    ]
    if health:
        header = ["CLUSTER", "ENDPOINT", "HEALTHY", "ACTIVE", "EJECTED"]
        out += ["\n", _table(header, health)]
    errors = document.get("errors", [])
    if errors:
        out.append("\nERRORS\n")
        out.extend(
            f"{e['file']}:{e['line']}: {e.get('field') or '-'}: {e['message']}\n" for e in errors
        )
    if isinstance(document.get("cluster"), dict):
        out.append(render_cluster(document["cluster"]))
    return "".join(out)


def _yes(value: object) -> str:
    return "yes" if value else "no"


def render_cluster(cluster: dict[str, Any]) -> str:
    """The ``--cluster`` section: who announces each address, the nodes, etcd's members."""
    addresses = [[a["address"], a["node"]] for a in cluster.get("addresses", ())]
    nodes = [
        [m["name"], _yes(m.get("healthy")), ",".join(m.get("addresses", ())) or "<none>"]
        for m in cluster.get("members", ())
    ]
    etcd = [
        [m["name"], m["endpoint"], _yes(m.get("healthy")), _yes(m.get("leader"))]
        for m in cluster.get("etcd", ())
    ]
    out = [
        f"\nCLUSTER (this node: {cluster.get('node')}, etcd reachable: "
        f"{_yes(cluster.get('etcdReachable'))}, allocator: {cluster.get('allocator')}, "
        f"certificates ordered by: {cluster.get('certificateOrderer')})\n",
        _table(["ADDRESS", "ANNOUNCED BY"], addresses),
        "\n",
        _table(["NODE", "ALIVE", "CAN ANNOUNCE"], nodes),
        "\n",
        _table(["ETCD MEMBER", "ENDPOINT", "HEALTHY", "LEADER"], etcd),
    ]
    out.extend(f"WARNING: {w}\n" for w in cluster.get("warnings", ()))
    return "".join(out)
