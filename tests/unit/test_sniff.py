"""ClientHello sniffing against real ClientHellos from Python's ssl and the openssl CLI."""

from __future__ import annotations

import random
import shutil
import socket
import ssl
import subprocess

import pytest

from edgegw.proto import sniff


def python_hello(
    server_name: str | None = "app.example.com", alpn: list[str] | None = None
) -> bytes:
    """The exact bytes Python's ssl puts on the wire first."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def openssl_hello(server_name: str) -> bytes:
    """The first bytes ``openssl s_client`` sends, caught by a loopback listener."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
        cmd += ["-servername", server_name, "-alpn", "h2,http/1.1"]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            server.settimeout(10)
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                data = b""
                while isinstance(sniff.parse_client_hello(data), sniff.NeedMore):
                    chunk = conn.recv(65536)
                    assert chunk
                    data += chunk
                return data
        finally:
            proc.kill()
            proc.wait()


def reframe(hello: bytes, size: int) -> bytes:
    """The same handshake message cut into TLS records of at most ``size`` bytes."""
    message = hello[5:]
    out = b""
    for start in range(0, len(message), size):
        fragment = message[start : start + size]
        out += bytes((22, 3, 1)) + len(fragment).to_bytes(2, "big") + fragment
    return out


HELLO = python_hello(alpn=["h2", "http/1.1"])


def test_python_hello_gives_sni_and_alpn() -> None:
    result = sniff.parse_client_hello(HELLO)
    assert result == sniff.ClientHello("app.example.com", ("h2", "http/1.1"), len(HELLO))


def test_hello_without_sni() -> None:
    result = sniff.parse_client_hello(python_hello(server_name=None))
    assert isinstance(result, sniff.ClientHello)
    assert result.server_name is None
    assert result.alpn == ()


def test_openssl_hello() -> None:
    hello = openssl_hello("Shop.Example.COM")
    result = sniff.parse_client_hello(hello)
    assert isinstance(result, sniff.ClientHello)
    assert result.server_name == "shop.example.com"
    assert result.alpn == ("h2", "http/1.1")


def test_every_truncation_needs_more() -> None:
    for end in range(len(HELLO)):
        assert sniff.parse_client_hello(HELLO[:end]) == sniff.NeedMore(), end


def test_every_split_point_gives_the_same_hello() -> None:
    expected = sniff.parse_client_hello(HELLO)
    for cut in range(len(HELLO) + 1):
        parser = sniff.ClientHelloParser()
        first = parser.feed(HELLO[:cut])
        assert first == (expected if cut == len(HELLO) else sniff.NeedMore())
        assert parser.feed(HELLO[cut:]) == expected


def test_byte_by_byte_feed() -> None:
    parser = sniff.ClientHelloParser()
    results = [parser.feed(HELLO[i : i + 1]) for i in range(len(HELLO))]
    assert all(r == sniff.NeedMore() for r in results[:-1])
    assert isinstance(results[-1], sniff.ClientHello)
    assert results[-1].server_name == "app.example.com"


@pytest.mark.parametrize("size", [1, 7, 100, 300])
def test_hello_spread_over_many_records(size: int) -> None:
    data = reframe(HELLO, size)
    result = sniff.parse_client_hello(data)
    assert isinstance(result, sniff.ClientHello)
    assert (result.server_name, result.size) == ("app.example.com", len(data))


def test_bytes_after_the_hello_are_not_part_of_it() -> None:
    early_data = bytes((23, 3, 3, 0, 4)) + b"abcd"
    result = sniff.parse_client_hello(HELLO + early_data)
    assert isinstance(result, sniff.ClientHello)
    assert result.size == len(HELLO)


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/1.1\r\n\r\n", b"\x00", sniff.H2_PREFACE, b"SSH-2.0-OpenSSH_9.2\r\n"],
)
def test_not_tls(data: bytes) -> None:
    assert sniff.parse_client_hello(data) == sniff.NotTLS()


def corrupt(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes((value,)) + data[offset + 1 :]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (corrupt(HELLO, 1, 2), "record version"),
        (corrupt(HELLO, 5, 2), "handshake type"),
        (HELLO[:3] + b"\x00\x00", "record length"),
        (HELLO[:3] + b"\x50\x00", "record length"),
        (reframe(HELLO, 100)[:105] + bytes((23, 3, 1, 0, 1, 0)), "record type"),
    ],
)
def test_malformed(data: bytes, reason: str) -> None:
    result = sniff.parse_client_hello(data)
    assert isinstance(result, sniff.Malformed)
    assert reason in result.reason


def test_hello_bigger_than_the_bound_is_refused_early() -> None:
    result = sniff.parse_client_hello(HELLO[:200], max_size=100)
    assert isinstance(result, sniff.Malformed)
    assert "larger than" in result.reason


def test_length_field_lying_inside_an_extension() -> None:
    at = HELLO.index(b"app.example.com")
    lying = HELLO[: at - 2] + (len("app.example.com") + 5).to_bytes(2, "big") + HELLO[at:]
    result = sniff.parse_client_hello(lying)
    assert result == sniff.Malformed("truncated server name")


@pytest.mark.parametrize("name", [b"bad name.example", b"caf\xc3\xa9.example"])
def test_server_name_that_is_no_host_name(name: bytes) -> None:
    at = HELLO.index(b"app.example.com")
    swapped = HELLO.replace(b"app.example.com", name[:15].ljust(15, b"x"))
    assert swapped[at : at + 15] != b"app.example.com"
    result = sniff.parse_client_hello(swapped)
    assert isinstance(result, sniff.Malformed)
    assert "server name" in result.reason


def test_random_corruption_never_raises() -> None:
    rng = random.Random(7)
    kinds = set()
    for _ in range(3000):
        data = bytearray(HELLO)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        kinds.add(type(sniff.parse_client_hello(bytes(data))).__name__)
    assert "Malformed" in kinds


def test_state_is_final_after_a_verdict() -> None:
    parser = sniff.ClientHelloParser()
    first = parser.feed(HELLO)
    assert parser.feed(b"\x16\x03\x01") is first


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "need_more"),
        (b"\x16", "tls"),
        (HELLO, "tls"),
        (b"PRI * HTTP/2.0\r\n", "need_more"),
        (sniff.H2_PREFACE, "h2c"),
        (sniff.H2_PREFACE + b"\x00\x00\x12\x04", "h2c"),
        (b"POST / HTTP/1.1\r\n", "other"),
        (b"GET / HTTP/1.1\r\n", "other"),
    ],
)
def test_detect(data: bytes, expected: str) -> None:
    assert sniff.detect(data) == expected
