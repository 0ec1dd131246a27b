"""UDPRoute relay over real loopback sockets: sessions, replies, expiry, ICMP, weights."""

from __future__ import annotations

import collections
import itertools
import random
import socket
from collections.abc import Callable

import trio

from edgegw import ir
from edgegw.net import udp
from edgegw.routing import l4
from tests.ports import free_port

LOCAL = "127.0.0.1"


async def start_backend(nursery: trio.Nursery, name: bytes) -> int:
    """A UDP echo server that prefixes its name, so clients see who answered."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((LOCAL, 0))

    async def serve() -> None:
        with sock:
            while True:
                data, addr = await sock.recvfrom(65536)
                await sock.sendto(name + b":" + data, addr)

    nursery.start_soon(serve)
    return int(sock.getsockname()[1])


def dead_port() -> int:
    """A loopback UDP port nobody listens on (ICMP port unreachable)."""
    return free_port(socket.SOCK_DGRAM)


def udp_table(*backends: tuple[str, int, int]) -> l4.L4Table:
    route = ir.L4Route(
        namespace="default",
        name="dns",
        kind="UDPRoute",
        backends=tuple(
            ir.Backend(name=name, weight=weight, endpoints=(ir.Endpoint(address=LOCAL, port=port),))
            for name, port, weight in backends
        ),
    )
    listener = ir.Listener(
        gateway_namespace="default",
        gateway_name="gw",
        name="udp",
        protocol="UDP",
        port=0,
        l4_routes=(route,),
    )
    return l4.compile_l4(ir.Port(transport="udp", address=LOCAL, port=0, listeners=(listener,)))


async def start_relay(
    nursery: trio.Nursery, table: l4.L4Table, **options: object
) -> tuple[tuple[str, int], udp.UDPOptions]:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((LOCAL, 0))
    opts = udp.UDPOptions(**options)  # type: ignore[arg-type]
    await nursery.start(
        lambda task_status: udp.serve_udp(
            sock, lambda: table, options=opts, task_status=task_status
        )
    )
    return sock.getsockname(), opts


async def client_socket() -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((LOCAL, 0))
    return sock


async def ask(sock: trio.socket.SocketType, relay: tuple[str, int], data: bytes) -> bytes:
    await sock.sendto(data, relay)
    reply, sender = await sock.recvfrom(65536)
    assert sender == relay  # replies come from the address the client wrote to
    return bytes(reply)


async def test_many_clients_each_get_their_own_replies() -> None:
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            backend = await start_backend(nursery, b"b")
            relay, opts = await start_relay(nursery, udp_table(("b", backend, 1)))
            results: dict[int, list[bytes]] = {}

            async def client(n: int) -> None:
                sock = await client_socket()
                with sock:
                    results[n] = [await ask(sock, relay, b"%d-%d" % (n, i)) for i in range(5)]

            async with trio.open_nursery() as clients:
                for n in range(50):
                    clients.start_soon(client, n)
            assert results == {n: [b"b:%d-%d" % (n, i) for i in range(5)] for n in range(50)}
            assert opts.stats.sessions_opened == 50
            assert opts.stats.datagrams_up == opts.stats.datagrams_down == 250
            nursery.cancel_scope.cancel()


async def test_large_datagram_round_trip() -> None:
    payload = random.Random(3).randbytes(65000)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            backend = await start_backend(nursery, b"b")
            relay, _ = await start_relay(nursery, udp_table(("b", backend, 1)))
            with await client_socket() as sock:
                assert await ask(sock, relay, payload[:-2]) == b"b:" + payload[:-2]
            nursery.cancel_scope.cancel()


async def test_idle_session_expires_and_a_new_one_opens() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            backend = await start_backend(nursery, b"b")
            relay, opts = await start_relay(nursery, udp_table(("b", backend, 1)), idle_timeout=0.3)
            with await client_socket() as sock:
                assert await ask(sock, relay, b"1") == b"b:1"
                assert opts.stats.sessions == 1
                start = trio.current_time()
                while opts.stats.sessions:
                    await trio.sleep(0.02)
                assert 0.25 < trio.current_time() - start < 2.0
                assert await ask(sock, relay, b"2") == b"b:2"
                assert (opts.stats.sessions_opened, opts.stats.sessions_expired) == (2, 1)
            nursery.cancel_scope.cancel()


def scripted(values: list[float]) -> Callable[[], float]:
    """A ``rand`` that plays ``values`` then repeats the last one."""
    stream = itertools.chain(values, itertools.repeat(values[-1]))
    return lambda: next(stream)


async def test_unreachable_backend_does_not_stall_other_sessions() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            live = await start_backend(nursery, b"live")
            table = udp_table(("dead", dead_port(), 1), ("live", live, 1))
            # first session: backend draw 0.1 → dead; later sessions: 0.9 → live
            relay, opts = await start_relay(nursery, table, rand=scripted([0.1, 0.0, 0.9]))
            doomed, healthy = await client_socket(), await client_socket()
            for _ in range(200):
                await doomed.sendto(b"x", relay)
            for i in range(20):
                await doomed.sendto(b"x", relay)
                assert await ask(healthy, relay, b"%d" % i) == b"live:%d" % i
            assert opts.stats.upstream_errors > 0
            assert opts.stats.sessions == 2
            doomed.close()
            healthy.close()
            nursery.cancel_scope.cancel()


async def test_weighted_sessions_stick_to_their_backend() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a = await start_backend(nursery, b"a")
            b = await start_backend(nursery, b"b")
            table = udp_table(("a", a, 1), ("b", b, 3))
            relay, _ = await start_relay(nursery, table, rand=random.Random(11).random)
            seen: collections.Counter[bytes] = collections.Counter()
            for _ in range(120):
                with await client_socket() as sock:
                    answers = {(await ask(sock, relay, b"q")).split(b":")[0] for _i in range(3)}
                    assert len(answers) == 1  # one session, one backend
                    seen[answers.pop()] += 1
            assert 0.62 < seen[b"b"] / 120 < 0.88
            nursery.cancel_scope.cancel()


async def test_a_full_table_evicts_the_least_recently_used_session() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            backend = await start_backend(nursery, b"b")
            relay, opts = await start_relay(nursery, udp_table(("b", backend, 1)), max_sessions=2)
            socks = [await client_socket() for _ in range(3)]
            assert await ask(socks[0], relay, b"0") == b"b:0"
            assert await ask(socks[1], relay, b"1") == b"b:1"
            assert await ask(socks[0], relay, b"0") == b"b:0"  # now socks[1] is the oldest
            assert await ask(socks[2], relay, b"2") == b"b:2"  # a new client is served
            assert (opts.stats.sessions_evicted, opts.stats.dropped) == (1, 0)
            assert await ask(socks[0], relay, b"again") == b"b:again"
            assert opts.stats.sessions_opened == 3  # socks[0] kept its session
            assert await ask(socks[1], relay, b"back") == b"b:back"  # evicted: a new one
            assert opts.stats.sessions_opened == 4
            for sock in socks:
                sock.close()
            nursery.cancel_scope.cancel()


async def test_one_source_spraying_ports_does_not_lock_others_out() -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            backend = await start_backend(nursery, b"b")
            relay, opts = await start_relay(nursery, udp_table(("b", backend, 1)), max_sessions=64)
            with await client_socket() as steady:
                for burst in range(25):
                    for _ in range(40):  # a new source port each time, never read
                        with await client_socket() as spray:
                            await spray.sendto(b"x", relay)
                    assert await ask(steady, relay, b"%d" % burst) == b"b:%d" % burst
                stats = opts.stats
                assert stats.sessions_opened > 900  # (the kernel may hand a port out twice)
                assert stats.sessions_evicted == stats.sessions_opened - 64
                assert stats.dropped == 0
            nursery.cancel_scope.cancel()


async def test_no_route_drops_quietly() -> None:
    listener = ir.Listener(
        gateway_namespace="d", gateway_name="g", name="udp", protocol="UDP", port=0
    )
    table = l4.compile_l4(ir.Port(transport="udp", address=LOCAL, port=0, listeners=(listener,)))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            relay, opts = await start_relay(nursery, table)
            with await client_socket() as sock:
                await sock.sendto(b"x", relay)
                while not opts.stats.dropped:
                    await trio.sleep(0.01)
                assert opts.stats.sessions == 0
            nursery.cancel_scope.cancel()
