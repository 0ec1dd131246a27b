"""The SNI of a QUIC client, read from its Initial datagrams before any connection exists."""

from __future__ import annotations

import os

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_header

from edgegw.proto.quichello import InitialReader


def _first_flight(server_name: str | None, alpn: list[str] | None = None) -> list[bytes]:
    """The datagrams aioquic's client sends first, as a server would receive them."""
    config = QuicConfiguration(is_client=True, alpn_protocols=alpn or ["h3"])
    config.server_name = server_name
    client = QuicConnection(configuration=config)
    client.connect(("127.0.0.1", 443), now=0.0)
    return [data for data, _ in client.datagrams_to_send(now=0.0)]


def _reader(datagram: bytes) -> InitialReader:
    header = pull_quic_header(Buffer(data=datagram), host_cid_length=8)
    assert header.version is not None
    return InitialReader(header.destination_cid, header.version)


def test_the_server_name_of_a_one_datagram_hello() -> None:
    datagrams = _first_flight("a.example.com")
    reader = _reader(datagrams[0])
    assert reader.feed(datagrams[0])
    assert (reader.server_name, reader.failed) == ("a.example.com", False)


def test_a_hello_without_sni_reads_as_none_not_as_failure() -> None:
    datagrams = _first_flight(None)
    reader = _reader(datagrams[0])
    assert reader.feed(datagrams[0])
    assert (reader.server_name, reader.failed) == (None, False)


def test_a_hello_over_several_datagrams_waits_for_all_of_them() -> None:
    alpn = ["h3", *(f"proto-{i:03d}-" + "x" * 40 for i in range(60))]  # a ~3 KB ClientHello
    datagrams = _first_flight("b.example.org", alpn)
    assert len(datagrams) > 1
    reader = _reader(datagrams[0])
    assert [reader.feed(d) for d in datagrams][-1]
    assert reader.feed(datagrams[0])  # done stays done
    assert reader.server_name == "b.example.org"


def test_noise_shaped_like_an_initial_fails() -> None:
    datagram = b"\xc3\x00\x00\x00\x01\x08" + os.urandom(8) + b"\x00\x00\x44\xd0" + os.urandom(1300)
    reader = _reader(datagram)
    assert reader.feed(datagram)
    assert (reader.server_name, reader.failed) == (None, True)
