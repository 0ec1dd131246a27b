"""edgegw's CPU per unary gRPC call through an h2c upstream, in process, on loopback sockets.

    python bench/grpc_path.py [--mode grpc|get] [--calls N] [--warm W] [--conns C]
                              [--streams M] [--grpcio] [--profile FILE]

This process is edgegw's side only: ``serve_http_connection`` (h2c prior
knowledge) on accepted loopback sockets, routing to a backend through the
real ``UpstreamPool``. Everything else runs in a child process (this script
with ``--peer``), so none of its CPU is counted here:

* the backend: an h2c gRPC echo on the ``h2`` library (HEADERS, DATA, trailers
  with ``grpc-status: 0``), or with ``--grpcio`` a grpcio server as `bench/grpc`
  uses; and an HTTP/1.1 keep-alive backend answering 100 bytes;
* the client: ``C`` h2c connections on the ``h2`` library, each sending ``M``
  calls per round in one write and waiting for all ``M`` answers (lockstep, so
  the batching does not depend on how fast either side is).

``--mode grpc`` sends unary gRPC calls (POST, ``content-type: application/grpc``,
``te: trailers``, a 5-byte-prefixed 16-byte message) through a GRPCRoute rule to
the h2c backend; ``--mode get`` sends GETs through an HTTPRoute rule to the
HTTP/1.1 backend, the reference the gRPC path is compared with.

Output: edgegw's CPU µs per call (``time.process_time`` over the measured
calls, after ``W`` warm-up calls). Under valgrind (``--tool=callgrind``; the
child is not traced) the difference of two runs' instruction totals, with N
and 5N calls, is the deterministic work per call. ``--profile`` writes a
cProfile of the measured calls.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import trio

MESSAGE = b"\x00\x00\x00\x00\x10" + b"0123456789abcdef"
GRPC_PATH = b"/bench.Echo/Unary"
H1_BODY = b"x" * 100


# --- edgegw's side (measured) ----------------------------------------------------------------


def _port_table(h2c_port: int, h1_port: int) -> Any:
    from edgegw import ir
    from edgegw.routing import compile_port

    h2c = ir.Backend(
        name="default/grpc:80",
        endpoints=(ir.Endpoint(address="127.0.0.1", port=h2c_port),),
        app_protocol="h2c",
    )
    h1 = ir.Backend(
        name="default/web:80", endpoints=(ir.Endpoint(address="127.0.0.1", port=h1_port),)
    )
    grpc_rule = ir.HTTPRouteRule(
        index=0,
        matches=(ir.HTTPMatch(path_type="PathPrefix", path="/bench.Echo/", method="POST"),),
        backends=(h2c,),
        grpc=True,
    )
    grpc_route = ir.HTTPRoute(namespace="default", name="g", kind="GRPCRoute", rules=(grpc_rule,))
    web_rule = ir.HTTPRouteRule(index=0, matches=(ir.HTTPMatch(path="/get"),), backends=(h1,))
    web_route = ir.HTTPRoute(namespace="default", name="w", rules=(web_rule,))
    listener = ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name="http",
        protocol="HTTP",
        port=8080,
        http_routes=(grpc_route, web_route),
    )
    return compile_port(ir.Port(address="127.0.0.1", port=8080, listeners=(listener,)))


async def _edgegw(args: argparse.Namespace) -> None:
    from edgegw.net.context import HTTPConnectionContext
    from edgegw.net.h2server import serve_h2_connection
    from edgegw.net.http import serve_http_connection
    from edgegw.net.upstream import UpstreamPool

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    argv = [sys.executable, __file__, "--peer", str(port)]
    argv += ["--mode", args.mode, "--calls", str(args.calls), "--warm", str(args.warm)]
    argv += ["--conns", str(args.conns), "--streams", str(args.streams)]
    argv += ["--grpcio"] if args.grpcio else []
    proc = await trio.lowlevel.open_process(argv, stdin=-1, stdout=-1)
    assert proc.stdout is not None
    lines = _lines(proc.stdout)
    h2c_port, h1_port = map(int, (await lines.__anext__()).split())
    table = _port_table(h2c_port, h1_port)
    pool = UpstreamPool()

    async def serve(stream: trio.SocketStream) -> None:
        ctx = HTTPConnectionContext(port_table=lambda: table, pool=pool, client=("127.0.0.1", 1))
        await serve_http_connection(stream, ctx, h2c=serve_h2_connection)

    profiler = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, serve, listeners)
        assert await lines.__anext__() == "warm"
        if args.profile:
            import cProfile

            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
        start = time.process_time()
        assert await lines.__anext__() == "done"
        used = time.process_time() - start
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        nursery.cancel_scope.cancel()
    await proc.wait()
    print(f"{args.mode}: {used / args.calls * 1e6:.1f} us of edgegw CPU per call ({args.calls})")


async def _lines(stream: trio.abc.ReceiveStream) -> Any:
    buf = b""
    while True:
        while b"\n" not in buf:
            data = await stream.receive_some(4096)
            if not data:
                return
            buf += data
        line, _, buf = buf.partition(b"\n")
        yield line.decode().strip()


# --- the peer (not measured): backends and client ---------------------------------------------


def _h2(client: bool) -> Any:
    import h2.config
    import h2.connection

    config = h2.config.H2Configuration(client_side=client, header_encoding=None)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    return conn


async def _grpc_backend_conn(stream: trio.SocketStream) -> None:
    import h2.events

    conn = _h2(client=False)
    await stream.send_all(conn.data_to_send())
    bodies: dict[int, bytes] = {}
    while data := await stream.receive_some(65536):
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                sid = event.stream_id
                head = [(b":status", b"200"), (b"content-type", b"application/grpc")]
                conn.send_headers(sid, head)
                conn.send_data(sid, bodies.pop(sid, b""))
                conn.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
        out = conn.data_to_send()
        if out:
            await stream.send_all(out)


async def _h1_backend_conn(stream: trio.SocketStream) -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\n" + H1_BODY
    buf = b""
    while data := await stream.receive_some(65536):
        buf += data
        count = buf.count(b"\r\n\r\n")
        if count:
            buf = buf[buf.rfind(b"\r\n\r\n") + 4 :]
            await stream.send_all(answer * count)


def _start_grpcio() -> tuple[Any, int]:
    from concurrent import futures

    import grpc

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


class _Client:
    """One h2c connection sending ``streams`` calls per round and reading every answer."""

    def __init__(self, stream: trio.SocketStream, mode: str, port: int) -> None:
        self.stream = stream
        self.conn = _h2(client=True)
        authority = b"127.0.0.1:%d" % port
        if mode == "grpc":
            self.headers = [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", GRPC_PATH),
                (b":authority", authority),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
            ]
        else:
            self.headers = [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":path", b"/get"),
                (b":authority", authority),
                (b"user-agent", b"grpc_path"),
            ]
        self.grpc = mode == "grpc"

    async def round(self, streams: int) -> None:
        import h2.events

        conn = self.conn
        for _ in range(streams):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, self.headers, end_stream=not self.grpc)
            if self.grpc:
                conn.send_data(sid, MESSAGE, end_stream=True)
        await self.stream.send_all(conn.data_to_send())
        ended = 0
        while ended < streams:
            data = await self.stream.receive_some(65536)
            if not data:
                raise RuntimeError("edgegw closed the connection")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.StreamEnded):
                    ended += 1
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    raise RuntimeError(f"stream reset: {event}")
                elif isinstance(event, h2.events.ResponseReceived) and self.grpc:
                    assert dict(event.headers)[b":status"] == b"200", event.headers
            out = conn.data_to_send()
            if out:
                await self.stream.send_all(out)


async def _peer(args: argparse.Namespace) -> None:
    grpcio = None
    async with trio.open_nursery() as nursery:
        if args.grpcio:
            grpcio, h2c_port = _start_grpcio()
        else:
            h2c = await nursery.start(trio.serve_tcp, _grpc_backend_conn, 0)
            h2c_port = h2c[0].socket.getsockname()[1]
        h1 = await nursery.start(trio.serve_tcp, _h1_backend_conn, 0)
        h1_port = h1[0].socket.getsockname()[1]
        print(h2c_port, h1_port, flush=True)
        clients = []
        for _ in range(args.conns):
            stream = await trio.open_tcp_stream("127.0.0.1", args.peer)
            clients.append(_Client(stream, args.mode, args.peer))

        async def rounds(calls: int) -> None:
            per_round = args.conns * args.streams
            for _ in range(max(1, calls // per_round)):
                async with trio.open_nursery() as inner:
                    for client in clients:
                        inner.start_soon(client.round, args.streams)

        await rounds(args.warm)
        print("warm", flush=True)
        await rounds(args.calls)
        print("done", flush=True)
        for client in clients:
            await client.stream.aclose()
        nursery.cancel_scope.cancel()
    if grpcio is not None:
        grpcio.stop(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("grpc", "get"), default="grpc")
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--warm", type=int, default=400)
    parser.add_argument("--conns", type=int, default=4)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--grpcio", action="store_true")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--peer", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.calls % (args.conns * args.streams):
        parser.error("--calls must be a multiple of --conns x --streams")
    trio.run(_peer if args.peer else _edgegw, args)


if __name__ == "__main__":
    main()
