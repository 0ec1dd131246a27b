"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from edgegw import systemd


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield sock
    finally:
        sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_with_status(notify_socket: socket.socket) -> None:
    assert systemd.ready("serving 3 listeners")
    assert received(notify_socket) == "READY=1\nSTATUS=serving 3 listeners"


def test_stopping_watchdog_and_status(notify_socket: socket.socket) -> None:
    systemd.stopping()
    systemd.watchdog()
    systemd.status("draining")
    assert [received(notify_socket) for _ in range(3)] == [
        "STOPPING=1",
        "WATCHDOG=1",
        "STATUS=draining",
    ]


def test_reloading_carries_the_monotonic_clock(notify_socket: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    systemd.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = received(notify_socket).split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edgegw-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.ready()
        assert received(sock) == "READY=1"


def test_without_systemd_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.ready()
    assert not systemd.watchdog()


def test_gone_systemd_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not systemd.stopping()


def test_watchdog_interval_from_the_environment() -> None:
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 20.0
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    other = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert systemd.watchdog_interval(other) is None
    mine = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd.watchdog_interval(mine) == 1.0


async def test_serve_watchdog_pings_at_half_the_interval(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notify_socket.setblocking(False)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(systemd.serve_watchdog)
            await trio.sleep(12)  # pings at 0, 5 and 10 s of the virtual clock
            nursery.cancel_scope.cancel()
    pings = []
    while True:
        try:
            pings.append(notify_socket.recv(100))
        except BlockingIOError:
            break
    assert pings == [b"WATCHDOG=1"] * 3


async def test_serve_watchdog_without_watchdog_only_sleeps(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    notify_socket.setblocking(False)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(systemd.serve_watchdog)
            await trio.sleep(100)
            nursery.cancel_scope.cancel()
    with pytest.raises(BlockingIOError):
        notify_socket.recv(100)
