#!/usr/bin/env python3
"""What edgegw's HTTP/1.1 sans-IO code costs per proxied request, interpreted and compiled.

    bench/http1_parser.py [--requests N] [--rounds N] [--no-results]

The CPU time of the synchronous work of one keep-alive request through the proxy, in
memory (no sockets, no trio): the client's request parsed (``RequestParser``), its
hop-by-hop fields stripped and its path normalized, the upstream request head
serialised, the upstream's response parsed on a reused ``ResponseParser`` and the
response head serialised for the client. It runs twice in one process, alternating:

* ``interpreted``: the modules' Python sources, loaded from their ``.py`` files;
* ``installed``: the modules as imported, compiled by mypyc where the install built
  them (``setup.py``: a C compiler and the Python headers were present).

The difference is what the mypyc build saves per request. Figures are the median of
``--rounds`` rounds of ``--requests`` requests each, in CPU µs per request
(``time.process_time``). Runs in the bench venv (system python3, ``_venv.py``) and writes
the "HTTP/1.1 parser" section of RESULTS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import _venv  # noqa: E402

if __name__ == "__main__":
    _venv.enter(__file__)

import argparse  # noqa: E402
import importlib  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

from lib import machine_info, update_results_section  # noqa: E402

from edgegw.proto import compiled  # noqa: E402

NAMES = ("http1", "target")
_REQUEST = (
    b"GET /api/items?id=42 HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: wrk/4.2.0\r\n"
    b"Accept: */*\r\nConnection: keep-alive\r\n\r\n"
)
_BODY = b"x" * 100
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 07:29:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n" + _BODY
)
_VIA = (b"via", b"1.1 edgegw-0123456789ab")


def one_request(http1: ModuleType, target: ModuleType, server: Any, client: Any) -> int:
    """The sans-IO work of one proxied keep-alive request; returns bytes written."""
    server.receive_data(_REQUEST)
    head = server.next_event()
    server.skip_message_end()
    headers = [h for h in http1.strip_hop_by_hop(head.headers) if h[0] != b"host"]
    path, _, _query = head.target.decode("ascii").partition("?")
    target.normalize_path(path)
    headers += [(b"host", b"app.example.com"), _VIA]
    upstream_head = http1.serialize_request_head(head.method, head.target, headers)
    client.reset()
    client.receive_data(_RESPONSE)
    response = client.next_event()
    body = client.next_event()
    client.next_event()
    fields = http1.strip_hop_by_hop(response.headers)
    fields.append(_VIA)
    out = http1.serialize_response_head(response.status_code, fields)
    return len(upstream_head) + len(out) + len(body.data)


def measure(http1: ModuleType, target: ModuleType, requests: int) -> float:
    """CPU µs per request over one round of ``requests`` requests."""
    server = http1.RequestParser()
    client = http1.ResponseParser(b"GET")
    client.receive_data(_RESPONSE)  # the first exchange: reset() needs a reusable parser
    while client.next_event() is not None:
        pass
    start = time.process_time()
    for _ in range(requests):
        one_request(http1, target, server, client)
    return (time.process_time() - start) / requests * 1e6


def _kinds(mods: dict[str, ModuleType]) -> str:
    return ", ".join(
        f"{name}: {'mypyc' if compiled.is_compiled(m) else 'source'}" for name, m in mods.items()
    )


def main() -> None:
    """Measure both variants, alternating rounds; print and record the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--no-results", action="store_true", help="leave RESULTS.md alone")
    args = parser.parse_args()
    variants = {
        "interpreted": {name: compiled.load_source("edgegw.proto", name) for name in NAMES},
        "installed": {name: importlib.import_module(f"edgegw.proto.{name}") for name in NAMES},
    }
    rounds: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(args.rounds):  # alternate, so both see the same load on a shared machine
        for label, mods in variants.items():
            rounds[label].append(measure(mods["http1"], mods["target"], args.requests))
    medians = {label: statistics.median(figures) for label, figures in rounds.items()}
    lines = [
        f"| {label} ({_kinds(variants[label])}) | {medians[label]:.1f} |" for label in variants
    ]
    saved = medians["interpreted"] - medians["installed"]
    summary = f"mypyc saves {saved:.1f} µs per request ({saved / medians['interpreted']:.0%})"
    print("\n".join(lines))
    print(summary)
    if not args.no_results:
        info = machine_info()
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        body = "\n".join(
            [
                f"`bench/http1_parser.py`, {when}; commit {info['commit']}, nproc "
                f"{info['nproc']}, cpu {info['cpu']}, python {info['python']}.",
                "The sans-IO work of one proxied HTTP/1.1 keep-alive request in memory (parse,",
                "strip hop-by-hop fields, normalize the path, serialise both heads, parse the",
                "response), median of "
                f"{args.rounds} alternating rounds of {args.requests:,} requests.",
                "",
                "| variant | CPU µs/request |",
                "|---|---:|",
                *lines,
                "",
                f"{summary}; `edgegw version` says which modules an install runs compiled.",
            ]
        )
        update_results_section("HTTP/1.1 parser", body)


if __name__ == "__main__":
    main()
