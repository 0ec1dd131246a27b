"""Serve one TCP and/or UDP port with edgegw's L4 relay, from a hand-built IR.

Until ``edgegw run`` can be driven from a config directory in the benchmarks,
this is how ``bench/tcp`` and ``bench/udp`` put the relay between a client
and a backend: ``python bench/l4_harness.py --listen 127.0.0.1:PORT
--backend 127.0.0.1:PORT [--tcp] [--udp] [--no-splice]``.
"""

from __future__ import annotations

import argparse
import functools
import socket
import sys
from typing import Literal

import trio

from edgegw import ir
from edgegw.net import tcp, udp
from edgegw.routing import l4


def split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def port_ir(
    transport: Literal["tcp", "udp"], listen: tuple[str, int], backend: tuple[str, int]
) -> ir.Port:
    protocol: ir.Protocol = "TCP" if transport == "tcp" else "UDP"
    kind: Literal["TCPRoute", "UDPRoute"] = "TCPRoute" if transport == "tcp" else "UDPRoute"
    target = ir.Backend(name="bench", endpoints=(ir.Endpoint(address=backend[0], port=backend[1]),))
    route = ir.L4Route(namespace="bench", name="bench", kind=kind, backends=(target,))
    listener = ir.Listener(
        gateway_namespace="bench",
        gateway_name="bench",
        name=transport,
        protocol=protocol,
        port=listen[1],
        l4_routes=(route,),
    )
    return ir.Port(transport=transport, address=listen[0], port=listen[1], listeners=(listener,))


async def main(args: argparse.Namespace) -> None:
    listen, backend = split(args.listen), split(args.backend)
    async with trio.open_nursery() as nursery:
        if args.tcp:
            table = l4.compile_l4(port_ir("tcp", listen, backend))
            ctx = tcp.TCPContext(table=lambda: table, splice=not args.no_splice)
            handler = functools.partial(tcp.serve_tcp_connection, ctx=ctx)
            await nursery.start(
                functools.partial(trio.serve_tcp, host=listen[0]), handler, listen[1]
            )
        if args.udp:
            utable = l4.compile_l4(port_ir("udp", listen, backend))
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            await sock.bind(listen)
            nursery.start_soon(functools.partial(udp.serve_udp, sock, lambda: utable))
        print("ready", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--tcp", action="store_true")
    parser.add_argument("--udp", action="store_true")
    parser.add_argument("--no-splice", action="store_true")
    try:
        trio.run(main, parser.parse_args())
    except KeyboardInterrupt:
        sys.exit(0)
