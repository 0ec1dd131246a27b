"""HPACK's common cases without the ``hpack`` library's per-field overhead.

Encoding never uses the dynamic table: each field is a static-table index, or
a literal "without indexing" (RFC 7541 section 6.2.2; "never indexed" for
credentials, section 6.2.3) with a static name index where there is one, and a
raw (not Huffman) value. Each field's bytes then depend on the field alone,
so they are cached, and a peer's SETTINGS_HEADER_TABLE_SIZE costs us no
memory at all. The first block of a connection opens with a dynamic table
size update to 0 (``TABLE_OFF``), so the peer's decoder keeps no table for
us either. The price is a few bytes per field that Huffman coding and the
dynamic table would have saved.

Decoding keeps ``hpack.Decoder`` for everything, with one fast path: a block
made only of one-byte indexed fields (what a client sends when it repeats a
request) changes no table and is looked up directly; any other block goes to
the library. ``tests/unit/test_h2codec_hpack.py`` checks both paths against
the library.
"""

from __future__ import annotations

from functools import lru_cache

from hpack import Decoder
from hpack.table import HeaderTable

HeaderList = list[tuple[bytes, bytes]]

TABLE_OFF = b"\x20"  # dynamic table size update: 0
_STATIC = HeaderTable.STATIC_TABLE
_FULL: dict[tuple[bytes, bytes], int] = {}
_NAME: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(_STATIC, 1):
    _FULL.setdefault((_name, _value), _index)
    _NAME.setdefault(_name, _index)
_SECRET = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"})


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 section 5.1), ``first`` holding the high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    return _integer(len(data), 7, 0) + data


@lru_cache(maxsize=4096)
def encode_field(name: bytes, value: bytes) -> bytes:
    """One field's representation; it depends on nothing else, hence the cache."""
    index = _FULL.get((name, value))
    if index is not None:
        return bytes((0x80 | index,))
    first = 0x10 if name in _SECRET else 0x00
    index = _NAME.get(name)
    if index is not None:
        return _integer(index, 4, first) + _string(value)
    return bytes((first,)) + _string(name) + _string(value)


_BLOCKS: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}
_BLOCKS_MAX = 256  # whole blocks remembered (see ``encode``)
_BLOCK_SIZE = 1024  # ... of at most this many bytes


def encode(headers: HeaderList) -> bytes:
    """A header block for ``headers`` (without the connection's first ``TABLE_OFF``).

    A block depends on its fields alone (no dynamic table), and a proxy sends the
    same response heads again and again (a backend's Date changes once a second), so
    small blocks are remembered whole: one lookup instead of one per field.
    """
    key = tuple(headers)
    block = _BLOCKS.get(key)
    if block is None:
        block = b"".join([encode_field(name, value) for name, value in key])
        if len(block) <= _BLOCK_SIZE:
            if len(_BLOCKS) >= _BLOCKS_MAX:
                _BLOCKS.clear()
            _BLOCKS[key] = block
    return block


def decode(decoder: Decoder, block: bytes) -> HeaderList:
    """``block`` decoded; the fast path when it is all one-byte indexed fields.

    Raises:
        hpack.exceptions.HPACKError: as ``Decoder.decode`` (and IndexError, ValueError).
    """
    fast = decode_indexed(decoder, block)
    if fast is not None:
        return fast
    return decode_library(decoder, block)


def decode_library(decoder: Decoder, block: bytes) -> HeaderList:
    """``block`` decoded by the library (which may change the decoder's dynamic table).

    Raises:
        hpack.exceptions.HPACKError: as ``Decoder.decode`` (and IndexError, ValueError).
    """
    return [(bytes(n), bytes(v)) for n, v in decoder.decode(block, raw=True)]


def all_indexed(block: bytes) -> bool:
    """Whether ``block`` is only one-byte indexed fields, which change no table."""
    return not block.translate(None, _INDEXED_BYTES)


_INDEXED_BYTES = bytes(range(0x81, 0xFF))  # indices 1-126 (0xFF starts a longer one)


def decode_indexed(decoder: Decoder, block: bytes) -> HeaderList | None:
    """``block`` decoded when it is all one-byte indexed fields within the limit, else None."""
    table = decoder.header_table
    dynamic = table.dynamic_entries
    static_length = len(_STATIC)
    out: HeaderList = []
    size = 0
    for byte in block:
        index = byte - 0x81
        if not 0 <= index < 126:
            return None  # not a one-byte indexed field
        if index < static_length:
            entry = _STATIC[index]
        elif index - static_length < len(dynamic):
            entry = dynamic[index - static_length]
        else:
            return None  # let the library report the bad index
        size += len(entry[0]) + len(entry[1]) + 32
        out.append(entry)
    if size > decoder.max_header_list_size:
        return None  # the library raises OversizedHeaderListError
    return out


__all__ = [
    "TABLE_OFF",
    "all_indexed",
    "decode",
    "decode_indexed",
    "decode_library",
    "encode",
    "encode_field",
]
