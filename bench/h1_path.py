"""edgegw's CPU per proxied HTTP/1.1 keep-alive GET, in process, on loopback sockets.

    python bench/h1_path.py [--requests N] [--warm W] [--conns C] [--profile FILE]
                            [--access-log] [--callgrind]

This process is edgegw's side only: ``serve_http_connection`` on accepted
loopback sockets with the real ``UpstreamPool`` and ``observe.Observer``
(metrics; the access log only with ``--access-log``, into memory), routing
through an HTTPRoute to an HTTP/1.1 keep-alive backend. The backend (answering
100 bytes with nginx's Server, Date, Content-Type and Connection fields) and
the clients (``C`` keep-alive connections, one request at a time each, as
h2load ``--h1`` and wrk send them) run in a child process (this script with
``--peer``), so none of their CPU is counted here.

Output: edgegw's CPU µs per request (``time.process_time`` over the measured
requests, after ``W`` warm-up requests). ``--callgrind`` runs this side under
valgrind (the child is not traced) with instrumentation on for one run of N and
one of 5N requests only, and prints the difference of the two instruction totals
/ 4N: the deterministic work per request. ``--profile`` writes a cProfile of the
measured requests (call counts per request: divide by N).
``bench/h2_path.py --proto http`` measures the whole gateway the same way.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

BODY = b"x" * 100
REQUEST = (
    b"GET /get HTTP/1.1\r\nHost: bench.example.com\r\nUser-Agent: h2load nghttp2/1.52.0\r\n\r\n"
)
ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 16:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n" + BODY
)


# --- edgegw's side (measured) ----------------------------------------------------------------


def _port_table(backend_port: int) -> Any:
    from edgegw import ir
    from edgegw.routing import compile_port

    backend = ir.Backend(
        name="default/up:80", endpoints=(ir.Endpoint(address="127.0.0.1", port=backend_port),)
    )
    rule = ir.HTTPRouteRule(index=0, matches=(ir.HTTPMatch(path="/"),), backends=(backend,))
    route = ir.HTTPRoute(namespace="default", name="r", rules=(rule,))
    listener = ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name="http",
        protocol="HTTP",
        port=8080,
        http_routes=(route,),
    )
    return compile_port(ir.Port(address="127.0.0.1", port=8080, listeners=(listener,)))


async def _edgegw(args: argparse.Namespace) -> None:
    from edgegw.accesslog import AccessLog
    from edgegw.net.context import HTTPConnectionContext
    from edgegw.net.http import serve_http_connection
    from edgegw.net.upstream import UpstreamPool
    from edgegw.observe import Observer

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    argv = [sys.executable, __file__, "--peer", str(port), "--conns", str(args.conns)]
    proc = await trio.lowlevel.open_process(argv, stdin=-1, stdout=-1)
    assert proc.stdout is not None
    assert proc.stdin is not None
    lines = _lines(proc.stdout)
    table = _port_table(int(await lines.__anext__()))
    pool = UpstreamPool()
    observer = Observer()
    observer.access_log = AccessLog(io.StringIO(), "text")
    observer.access_log.enabled = args.access_log

    async def serve(stream: trio.SocketStream) -> None:
        ctx = HTTPConnectionContext(
            port_table=lambda: table, pool=pool, client=("127.0.0.1", 1), observer=observer
        )
        await serve_http_connection(stream, ctx)

    async def run(requests: int) -> None:
        await proc.stdin.send_all(b"%d\n" % requests)  # type: ignore[union-attr]
        assert await lines.__anext__() == "done"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, serve, listeners)
        await run(args.warm)
        if args.callgrind:
            totals = []
            for count in (args.requests, 5 * args.requests):
                _callgrind("-z")
                _callgrind("-i", "on")
                await run(count)
                _callgrind("-i", "off")
                totals.append(_callgrind_total())
            per = (totals[1] - totals[0]) / (4 * args.requests)
            print(f"{per / 1000:.1f}k instructions per request")
        else:
            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile(time.process_time)
                profiler.enable()
            start = time.process_time()
            await run(args.requests)
            used = time.process_time() - start
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            print(f"{used / args.requests * 1e6:.1f} us of edgegw CPU per request")
        await proc.stdin.send_all(b"0\n")
        nursery.cancel_scope.cancel()
    await proc.wait()


def _callgrind(*flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(os.getpid())], capture_output=True, check=True)


def _callgrind_total() -> int:
    """Dump the counters and read the instruction total of the dump."""
    out = Path(os.environ.get("H1_PATH_CG", "callgrind.out.h1_path"))
    before = set(out.parent.glob(out.name + "*"))
    _callgrind("-d")
    for _ in range(600):
        new = set(out.parent.glob(out.name + "*")) - before
        if new:
            time.sleep(0.5)  # the dump is being written
            text = Path(new.pop()).read_text()
            return int(re.search(r"^totals: (\d+)", text, re.M).group(1))  # type: ignore[union-attr]
        time.sleep(0.1)
    raise SystemExit("callgrind wrote no dump")


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


# --- the peer (not measured): backend and clients --------------------------------------------


async def _backend_conn(stream: trio.SocketStream) -> None:
    buf = b""
    while data := await stream.receive_some(65536):
        buf += data
        count = buf.count(b"\r\n\r\n")
        if count:
            buf = buf[buf.rfind(b"\r\n\r\n") + 4 :]
            await stream.send_all(ANSWER * count)


async def _client(stream: trio.SocketStream, requests: int) -> None:
    for _ in range(requests):
        await stream.send_all(REQUEST)
        buf = b""
        while not (buf.endswith(BODY) and b"\r\n\r\n" in buf):
            data = await stream.receive_some(65536)
            if not data:
                raise RuntimeError("edgegw closed the connection")
            buf += data
        if not buf.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"unexpected answer: {buf[:200]!r}")


async def _peer(args: argparse.Namespace) -> None:
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(trio.serve_tcp, _backend_conn, 0)
        print(backend[0].socket.getsockname()[1], flush=True)
        streams = [await trio.open_tcp_stream("127.0.0.1", args.peer) for _ in range(args.conns)]
        stdin = trio.lowlevel.FdStream(os.dup(0))
        async for line in _lines(stdin):
            requests = int(line)
            if not requests:
                break
            async with trio.open_nursery() as inner:
                for stream in streams:
                    inner.start_soon(_client, stream, requests // len(streams))
            print("done", flush=True)
        for stream in streams:
            await stream.aclose()
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--warm", type=int, default=400)
    parser.add_argument("--conns", type=int, default=4)
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--peer", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.requests % args.conns or args.warm % args.conns:
        parser.error("--requests and --warm must be multiples of --conns")
    if args.callgrind and not args.peer and "H1_PATH_CG" not in os.environ:
        out = Path(os.environ.get("H1_PATH_CG", "/tmp/callgrind.out.h1_path"))
        for old in out.parent.glob(out.name + "*"):
            old.unlink()
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        argv += [f"--callgrind-out-file={out}", sys.executable, *sys.argv]
        env = {**os.environ, "H1_PATH_CG": str(out)}
        sys.exit(subprocess.run(argv, env=env, check=False).returncode)
    trio.run(_peer if args.peer else _edgegw, args)


if __name__ == "__main__":
    main()
