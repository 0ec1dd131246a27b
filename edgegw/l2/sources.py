"""Where the speaker learns what to announce: the gateway's admin API and the config DIR.

The held addresses come from ``GET /api/status`` (each Gateway's ``status.addresses``), since
only the gateway knows what it actually holds. Which pool goes on which interface comes from
the IPAddressPool and L2Advertisement resources under DIR, since ``/api/status`` carries only
statuses, not specs. The directory is re-read only when a file's size or mtime changed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import trio
import yaml

from edgegw.l2.announcer import L2Advertisement
from edgegw.pools import Pool

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
MAX_STATUS_BYTES = 64 * 1024 * 1024


class StatusUnavailable(Exception):
    """The gateway's admin API did not give a usable ``/api/status`` answer."""


@dataclass(frozen=True, slots=True)
class MetalLBConfig:
    """The IPAddressPools and L2Advertisements found under DIR, with per-file problems."""

    pools: tuple[Pool, ...] = ()
    advertisements: tuple[L2Advertisement, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(slots=True)
class ConfigDirWatcher:
    """Re-reads DIR's MetalLB resources when any file under it changed since last time."""

    root: Path
    _signature: tuple[tuple[str, int, int], ...] | None = None
    _config: MetalLBConfig = field(default_factory=MetalLBConfig)

    def current(self) -> MetalLBConfig:
        signature = tuple(_signature(self.root))
        if signature != self._signature:
            self._signature = signature
            self._config = load_metallb(self.root)
            for error in self._config.errors:
                log.warning("%s", error)
        return self._config


def _config_files(root: Path) -> Iterator[Path]:
    """Files the gateway reads too: by suffix, skipping hidden names and editor leftovers."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith((".", "#")) or name.endswith(("~", ".swp")):
                continue
            if name.endswith(SUFFIXES):
                yield Path(dirpath) / name


def _signature(root: Path) -> Iterator[tuple[str, int, int]]:
    for path in _config_files(root):
        try:
            info = path.stat()
        except OSError:
            continue
        yield str(path), info.st_mtime_ns, info.st_size


def load_metallb(root: Path) -> MetalLBConfig:
    """Every IPAddressPool and L2Advertisement under ``root``; other kinds are ignored.

    A file or resource that cannot be read is reported in ``errors`` and skipped, so one bad
    file does not silence the others.
    """
    pools: list[Pool] = []
    ads: list[L2Advertisement] = []
    errors: list[str] = []
    for path in _config_files(root):
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            errors.append(f"{path.relative_to(root)}: {exc}")
            continue
        for doc in _resources(documents):
            _collect(doc, path.relative_to(root), pools, ads, errors)
    return MetalLBConfig(tuple(pools), tuple(ads), tuple(errors))


def _resources(documents: list[Any]) -> Iterator[dict[str, Any]]:
    for doc in documents:
        if isinstance(doc, dict) and doc.get("kind") == "List":
            yield from (item for item in doc.get("items") or [] if isinstance(item, dict))
        elif isinstance(doc, dict):
            yield doc


def _collect(
    doc: dict[str, Any],
    where: Path,
    pools: list[Pool],
    ads: list[L2Advertisement],
    errors: list[str],
) -> None:
    if not str(doc.get("apiVersion", "")).startswith("metallb.io/"):
        return
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    name = str(meta.get("name", ""))
    try:
        if doc.get("kind") == "IPAddressPool":
            pools.append(_pool(name, meta, spec))
        elif doc.get("kind") == "L2Advertisement":
            ads.append(_advertisement(name, meta, spec))
    except (ValueError, TypeError, AttributeError) as exc:
        errors.append(f"{where}: {doc.get('kind')} {name}: {exc}")


def _pool(name: str, meta: dict[str, Any], spec: dict[str, Any]) -> Pool:
    return Pool.from_spec(
        name,
        [str(a) for a in spec.get("addresses") or []],
        auto_assign=bool(spec.get("autoAssign", True)),
        avoid_buggy_ips=bool(spec.get("avoidBuggyIPs", False)),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
    )


def _advertisement(name: str, meta: dict[str, Any], spec: dict[str, Any]) -> L2Advertisement:
    return L2Advertisement(
        name,
        str(meta.get("namespace") or "default"),
        tuple(str(p) for p in spec.get("ipAddressPools") or []),
        tuple(dict(s) for s in spec.get("ipAddressPoolSelectors") or []),
        tuple(str(i) for i in spec.get("interfaces") or []),
    )


def held_addresses(status: Any) -> frozenset[str]:
    """Every IPAddress in the ``status.addresses`` of the Gateways in an ``/api/status`` body.

    Raises:
        StatusUnavailable: the body is not shaped like ``/api/status``.
    """
    if not isinstance(status, dict) or not isinstance(status.get("resources"), list):
        raise StatusUnavailable("/api/status has no resources list")
    found: set[str] = set()
    for resource in status["resources"]:
        if not isinstance(resource, dict) or resource.get("kind") != "Gateway":
            continue
        for address in (resource.get("status") or {}).get("addresses") or []:
            if isinstance(address, dict) and address.get("type", "IPAddress") == "IPAddress":
                found.add(str(address.get("value", "")))
    return frozenset(found - {""})


async def fetch_status(admin: str) -> Any:
    """``GET /api/status`` from the admin address (``HOST:PORT`` or ``unix:/path``).

    Raises:
        StatusUnavailable: connection refused or reset, a non-200 answer, or a body that is
            not JSON.
    """
    try:
        stream = await _connect(admin)
        async with stream:
            body = await _request(stream, admin)
        return json.loads(body)
    except (OSError, trio.BrokenResourceError, h11.ProtocolError, ValueError) as exc:
        raise StatusUnavailable(f"{admin}: {exc}") from exc


async def _connect(admin: str) -> trio.abc.Stream:
    if admin.startswith("unix:"):
        return await trio.open_unix_socket(admin[len("unix:") :])
    host, _, port = admin.rpartition(":")
    return await trio.open_tcp_stream(host.strip("[]") or "127.0.0.1", int(port))


async def _request(stream: trio.abc.Stream, admin: str) -> bytes:
    conn = h11.Connection(h11.CLIENT)
    host = "localhost" if admin.startswith("unix:") else admin
    request = h11.Request(method="GET", target="/api/status", headers=[("Host", host)])
    await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response) and event.status_code != 200:
            raise ValueError(f"/api/status answered {event.status_code}")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_STATUS_BYTES:
                raise ValueError("/api/status answer too large")
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            raise ValueError("connection closed before the answer ended")
