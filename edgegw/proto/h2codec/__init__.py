"""A lean, strict HTTP/2 codec without I/O, on ``hyperframe`` and ``hpack``.

``H2Codec`` (``connection.py``) is one connection's state machine, client or
server side: ``receive_data(bytes) -> [events]``, ``send_headers``/``send_data``
/``reset_stream``/``close_connection`` queue frames, ``data_to_send()`` takes
them. Stream states are one table (``streams.py``); header blocks are checked
as RFC 9113 section 8 says (``validate.py``); hot frames are read and written
with ``struct`` (``framing.py``), rare ones with ``hyperframe``.

It exists because ``h2``, which it is tested against frame for frame, spends
more CPU per request than all the rest of a proxied HTTP/2 request.
"""

from edgegw.proto.h2codec import events
from edgegw.proto.h2codec.connection import H2Codec
from edgegw.proto.h2codec.errors import (
    ErrorCode,
    FlowControlError,
    H2Error,
    ProtocolError,
    StreamClosedError,
)
from edgegw.proto.h2codec.settings import CodecConfig

__all__ = [
    "CodecConfig",
    "ErrorCode",
    "FlowControlError",
    "H2Codec",
    "H2Error",
    "ProtocolError",
    "StreamClosedError",
    "events",
]
