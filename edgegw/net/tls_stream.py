"""A trio Stream that speaks TLS through a pyOpenSSL ``Connection`` on memory BIOs.

Theory of operation
-------------------
OpenSSL never touches a socket here. Bytes read from the transport are written
into the connection's incoming memory BIO; whatever OpenSSL wants to send
(handshake messages, records, alerts) piles up in its outgoing BIO until we
pull it out and send it on. Each operation is "call OpenSSL until it stops
saying WantRead, feeding it from the transport in between".

Two tasks may use the stream at once, one receiving and one sending (HTTP/2, or
a TCP relay copying both ways). Both directions can make OpenSSL produce bytes:
a send makes records, a receive may make an alert. To keep records in order on
the wire, bytes are pulled from the outgoing BIO synchronously into ``_outbox``
(trio switches tasks only at checkpoints, so pulls never interleave), and only
the holder of ``_send_lock`` takes bytes out of the outbox and writes them to
the transport. A task that queued bytes waits for the lock, so its ``send_all``
returns only once its bytes were handed to the transport.

Cancellation: a receive that is cancelled loses nothing (plaintext is returned
only after the last checkpoint). A cancelled write to the transport may have
sent half a record, so it marks the stream broken, as ``trio.SSLStream`` does.

End of stream: a close_notify and a bare TCP close both read as ``b""``. HTTP
clients routinely skip close_notify, and HTTP framing catches truncation.

TLS inline: the Stream interface costs a request two scheduler trips (the
checkpoints a Stream promises) and several ``WantReadError``s (each a walk of
OpenSSL's error queue in pyOpenSSL), more than the cryptography itself. The
HTTP loops therefore read and write through ``TLSIO`` (``byte_io()``), which
has ``FastSocket``'s interface: decrypt what OpenSSL holds, else read the
socket without waiting, else wait; encrypt, then write what the kernel takes
and wait only for the rest. It shares the stream's OpenSSL connection,
outbox and send lock, so both may be used on one connection, in order.

``TLSIO`` calls ``SSL_read``/``SSL_write``/``BIO_*`` itself through pyOpenSSL's
cffi bindings: pyOpenSSL's methods cost 7.3 µs per request/response pair
against 2.5 µs for the same calls made directly (2.45 µs for the stdlib's C
``SSLObject``), the difference being Python layers, a buffer allocated per
call and an exception per WantRead. Plaintext is read into one scratch buffer
per thread and copied out at once; only failures go through pyOpenSSL, which
names them and clears OpenSSL's error queue.

Each call through cffi costs about a microsecond of Python and GIL handling
besides OpenSSL's own work, so a request's path makes as few as it can: the
incoming bytes are written to the BIO, one ``SSL_read`` decrypts them; one
``SSL_write`` encrypts the response, one ``BIO_read`` takes its records (a
memory BIO gives everything it holds up to the size asked, so a short result
needs no second look), one ``write`` sends them. OpenSSL is not asked for
plaintext it cannot have: after it said WantRead, not until ciphertext came
(``_starved``); and a read that returned less than it asked took the rest of
its record, so when the incoming BIO is empty too OpenSSL holds nothing more
(without read-ahead it takes a record's header, then its body, from the BIO,
never more) and ``_starved`` is set without the ``SSL_read`` that would only
say WantRead: the check for a next request at hand reads the socket first.
The HTTP/1.1 writer sends through ``write_nowait``, which needs no clock and no
await when the kernel takes every record.
"""

from __future__ import annotations

import contextlib
import math
import operator
import threading
from collections.abc import Callable
from typing import Any, NoReturn

import trio
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib
from OpenSSL._util import no_zero_allocator as _no_zero_allocator

from edgegw.net.fastio import READ_SIZE, FastSocket, TimedOut

_RECV_CHUNK = 65536
_SEND_CHUNK = 65536
_CLOSE_NOTIFY_GRACE = 1.0


# Reads and writes call OpenSSL through the cffi bindings pyOpenSSL uses, without its
# per-call layers (argument checks, a buffer allocated per call, an exception per WantRead).
_SSL_read = _lib.SSL_read
_SSL_write = _lib.SSL_write
_SSL_pending = _lib.SSL_pending
_SSL_get_error = _lib.SSL_get_error
_BIO_read = _lib.BIO_read
_BIO_write = _lib.BIO_write
_BIO_mem_data = _lib.BIO_get_mem_data
_WANT_READ = _lib.SSL_ERROR_WANT_READ
_ZERO_RETURN = _lib.SSL_ERROR_ZERO_RETURN
_NULL = _ffi.NULL
_unpack: Callable[[Any, int], bytes] = _ffi.unpack
_from_buffer = _ffi.from_buffer
_SCRATCH = READ_SIZE  # the largest read any connection makes (``bufferlimit.read_size``)
_scratch = threading.local()


def _scratch_buffer() -> Any:
    """This thread's buffer for OpenSSL to read into, one synchronous call at a time.

    Shared by the thread's connections: every use is filled and copied out
    before the next await. Per thread because cffi releases the GIL during a call.
    """
    buf = getattr(_scratch, "buf", None)
    if buf is None:
        buf = _scratch.buf = _no_zero_allocator("char[]", _SCRATCH)
    return buf


def _quietly() -> contextlib.suppress:
    """For courtesy bytes (alerts, close_notify) whose loss changes nothing."""
    return contextlib.suppress(SSL.Error, trio.BrokenResourceError, trio.ClosedResourceError)


class TLSStream(trio.abc.Stream):
    """TLS over ``transport_stream``; the handshake is driven by ``do_handshake``.

    ``received`` holds bytes already read from the transport (a peeked
    ClientHello); OpenSSL reads them before anything else.
    """

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        connection: SSL.Connection,
        received: bytes | bytearray = b"",
    ) -> None:
        self.transport_stream = transport_stream
        self.connection = connection
        self._outbox = bytearray()
        self._send_lock = trio.StrictFIFOLock()
        self._in_flight = False  # the lock's holder is writing (cheaper than ``locked()``)
        self._receiving = False
        self._sending = False
        self._eof = False
        self._broken = False
        self._closed = False
        self._starved = False  # OpenSSL said WantRead and got no ciphertext since
        self._ssl = connection._ssl
        self._rbio = connection._into_ssl
        self._wbio = connection._from_ssl
        self._buf = _scratch_buffer()
        # A plain socket underneath is read and written directly (``net/fastio``).
        sock = transport_stream.socket if type(transport_stream) is trio.SocketStream else None
        self._fast = FastSocket(sock) if sock is not None else None
        if received:
            self._feed_bytes(received)

    # --- handshake and teardown ------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Runs the handshake to completion.

        Raises:
            OpenSSL.SSL.Error: the peer spoke bad TLS or failed verification.
            trio.BrokenResourceError: the transport broke.
        """
        while True:
            try:
                self.connection.do_handshake()
            except SSL.WantReadError:
                await self._flush()
                await self._feed()
            else:
                await self._flush()
                return

    async def abort(self, grace: float) -> None:
        """Closes without close_notify, first sending any alert OpenSSL queued (within ``grace``).

        The alert is what lets a client print "certificate required" instead of
        "connection reset"; the grace keeps a stalled peer from holding us.
        """
        self._closed = True
        if not self._broken:
            with trio.move_on_after(grace), _quietly():
                await self._flush()
        await trio.aclose_forcefully(self.transport_stream)

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            if not self._broken:
                await self._send_close_notify()
        finally:
            await self.transport_stream.aclose()

    async def _send_close_notify(self) -> None:
        with trio.move_on_after(_CLOSE_NOTIFY_GRACE), _quietly():
            self.connection.shutdown()
            await self._flush()

    def byte_io(self, read_size: int | None = None) -> TLSIO | None:
        """The inline reader/writer over this connection, when a plain socket is underneath.

        ``read_size`` bounds each read of ciphertext from the socket and of
        plaintext from OpenSSL, from now on (``fastio.open_io``).
        """
        if self._fast is None:
            return None
        if read_size:
            self._fast.read_size = read_size
        return TLSIO(self, read_size or _RECV_CHUNK)

    # --- the Stream interface --------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self.receive_before(max_bytes, math.inf)

    async def receive_before(self, max_bytes: int | None, deadline: float) -> bytes:
        """``receive_some``, giving up with ``fastio.TimedOut`` at ``deadline``.

        Over a plain socket the deadline is kept by ``fastio``'s watchdog, far
        cheaper than a ``CancelScope`` per read; otherwise a scope keeps it.
        ``cancel_wait`` ends the wait at once (draining idle connections).
        """
        self._check_usable()
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        size = _RECV_CHUNK if max_bytes is None else operator.index(max_bytes)
        if size < 1:
            raise ValueError("max_bytes must be at least 1")
        self._receiving = True
        try:
            if self._fast is not None or deadline == math.inf:
                return await self._receive(size, deadline)
            with trio.move_on_after(deadline - trio.current_time()):
                return await self._receive(size, deadline)
            raise TimedOut("timed out")
        finally:
            self._receiving = False

    def cancel_wait(self) -> None:
        """End a ``receive_before`` wait with ``TimedOut``, now and from now on."""
        if self._fast is not None:
            self._fast.cancel()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_usable()
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            view = memoryview(data)
            await trio.lowlevel.checkpoint()
            for start in range(0, len(view), _SEND_CHUNK):
                self._encrypt(view[start : start + _SEND_CHUNK])
                await self._flush()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        self._check_usable()
        await self.transport_stream.wait_send_all_might_not_block()

    # --- OpenSSL, synchronously (shared with ``TLSIO``) -----------------------------------

    def _decrypt(self, size: int) -> bytes | None:
        """At most ``size`` bytes of plaintext OpenSSL can give now (``b""`` at the end),
        None when it needs more ciphertext.

        Raises:
            trio.BrokenResourceError: bad TLS from the peer.
        """
        if self._eof:
            return b""
        if self._starved:  # WantRead left nothing pending, and no ciphertext came since
            return None
        ssl = self._ssl
        got = _SSL_read(ssl, self._buf, size)
        if got > 0:
            if got < size and not _BIO_mem_data(self._rbio, _NULL):
                self._starved = True  # it took the last record (see the theory above)
            return _unpack(self._buf, got)
        if _SSL_get_error(ssl, got) == _WANT_READ:
            self._starved = True
            return None
        return self._not_read(got)

    def _not_read(self, result: int) -> bytes:
        """``b""`` when ``SSL_read`` gave nothing because the peer closed; else raise."""
        if _SSL_get_error(self._ssl, result) == _ZERO_RETURN:  # close_notify
            self._eof = True
            return b""
        try:  # pyOpenSSL names the failure (and clears OpenSSL's error queue)
            self.connection._raise_ssl_error(self._ssl, result)
        except SSL.SysCallError:  # the peer closed without close_notify
            self._eof = True
            return b""
        except SSL.Error as exc:
            self._broken = True
            raise trio.BrokenResourceError("TLS error while receiving") from exc
        self._broken = True
        raise trio.BrokenResourceError("TLS error while receiving")

    def _encrypt(self, data: bytes | bytearray | memoryview) -> None:
        """Turn ``data`` into records in OpenSSL's outgoing BIO.

        pyOpenSSL turns on partial writes, so a call may stop after a record
        (a client may ask for small ones); small bytes usually take one call.

        Raises:
            trio.BrokenResourceError: OpenSSL refused (the connection failed before).
        """
        size = len(data)
        if not size:
            return
        done = 0
        if type(data) is bytes:
            done = _SSL_write(self._ssl, data, size)
            if done == size:
                return
            if done <= 0:
                self._write_failed(done)
        self._encrypt_from(data, done)

    def _encrypt_from(self, data: bytes | bytearray | memoryview, done: int) -> None:
        """``_encrypt`` of what follows the first ``done`` bytes of ``data``."""
        ssl, size = self._ssl, len(data)
        with _from_buffer(data) as view:
            while done < size:
                got = _SSL_write(ssl, view + done, size - done)
                if got <= 0:
                    self._write_failed(got)
                done += got

    def _write_failed(self, result: int) -> NoReturn:
        self._broken = True
        try:  # pyOpenSSL names the failure (and clears OpenSSL's error queue)
            self.connection._raise_ssl_error(self._ssl, result)
        except SSL.Error as exc:
            raise trio.BrokenResourceError("TLS error while sending") from exc
        raise trio.BrokenResourceError("TLS error while sending")

    def _feed_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Ciphertext from the peer into OpenSSL; ``b""`` (the peer's EOF) ends its input."""
        self._starved = False
        size = len(data)
        if not size:
            self.connection.bio_shutdown()
            return
        if type(data) is bytes:
            taken = _BIO_write(self._rbio, data, size)
        else:
            with _from_buffer(data) as view:
                taken = _BIO_write(self._rbio, view, size)
        if taken != size:  # a memory BIO takes everything unless memory ran out
            self._broken = True
            raise trio.BrokenResourceError("OpenSSL did not take the ciphertext")

    def _records(self) -> bytes | None:
        """What OpenSSL wrote for the peer, up to ``_SCRATCH`` bytes; None when nothing.

        One call: a memory BIO gives all it holds up to the size asked, so a
        result shorter than ``_SCRATCH`` took everything (no size query before,
        no emptiness check after).
        """
        buf = self._buf
        got = _BIO_read(self._wbio, buf, _SCRATCH)
        return _unpack(buf, got) if got > 0 else None

    # --- internals -------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        if self._broken:
            raise trio.BrokenResourceError("the TLS stream is broken")

    async def _receive(self, max_bytes: int, deadline: float = math.inf) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False  # a wait for the transport is this call's checkpoint
        size = min(max_bytes, _SCRATCH)
        while (data := self._decrypt(size)) is None:
            await self._flush()
            waited = await self._feed(deadline) or waited
        if data:
            self._pull()  # reading may have made OpenSSL answer (a key update)
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def _feed(self, deadline: float = math.inf) -> bool:
        """Moves one read from the transport into OpenSSL; EOF becomes a BIO EOF.

        Returns True when it had to wait for the transport (a checkpoint).

        Raises:
            TimedOut: over a plain socket, nothing came before ``deadline``.
        """
        fast = self._fast
        if fast is None:
            data = await self.transport_stream.receive_some(_RECV_CHUNK)
            waited = True
        else:
            found = fast.recv_nowait()
            waited = found is None
            data = await fast.recv(deadline, wait_first=True) if found is None else found
        self._feed_bytes(data)
        return waited

    def _pull(self) -> None:
        """Move what OpenSSL wrote into its BIO to ``_outbox``."""
        while (records := self._records()) is not None:
            self._outbox += records
            if len(records) < _SCRATCH:
                return

    async def _flush(self, deadline: float = math.inf) -> None:
        """Sends everything OpenSSL produced so far, in order (see the theory above).

        Not a checkpoint by itself: its callers have one (``send_all``) or wait next.
        ``deadline`` bounds the writes over a plain socket (``TLSIO.send_all``).
        """
        self._pull()
        if not self._outbox:
            return
        lock = self._send_lock
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()  # free: skip acquire()'s yield
        self._in_flight = True
        try:
            while self._outbox:
                chunk = bytes(self._outbox)
                self._outbox.clear()
                try:
                    if self._fast is not None:
                        await self._fast.send_all(chunk, deadline)
                    else:
                        await self.transport_stream.send_all(chunk)
                except BaseException:
                    self._broken = True
                    raise
                self._pull()
        finally:
            self._in_flight = False
            lock.release()


class TLSIO:
    """``FastSocket``'s interface over a ``TLSStream``'s OpenSSL connection (see above).

    ``recv`` returns without a checkpoint when plaintext or ciphertext is at
    hand, as ``FastSocket.recv`` does; callers that loop add their own.
    """

    __slots__ = ("_fast", "_size", "_tls")

    def __init__(self, tls: TLSStream, read_size: int = _RECV_CHUNK) -> None:
        assert tls._fast is not None
        self._tls = tls
        self._fast = tls._fast
        self._size = min(read_size, _SCRATCH)

    @property
    def read_size(self) -> int:
        """At most this much plaintext per ``recv`` (ciphertext per read: ``FastSocket``'s)."""
        return self._size

    @property
    def expired(self) -> bool:
        """A wait was cancelled or timed out (draining, as ``FastSocket.expired``)."""
        return self._fast.expired

    def recv_nowait(self) -> bytes | None:
        """Plaintext available without waiting (``b""`` at EOF), else None.

        A starved OpenSSL (it said WantRead, and no ciphertext came since) is
        not asked again: the socket is read first.

        Raises:
            trio.BrokenResourceError: the connection failed or spoke bad TLS.
        """
        tls = self._tls
        while True:
            if not tls._starved:  # ``TLSStream._decrypt``, inline: once or twice per request
                if tls._eof:
                    return b""
                ssl, buf, size = tls._ssl, tls._buf, self._size
                got = _SSL_read(ssl, buf, size)
                if got > 0:
                    if got < size and not _BIO_mem_data(tls._rbio, _NULL):
                        tls._starved = True  # it took the last record (see the theory above)
                    return _unpack(buf, got)
                if _SSL_get_error(ssl, got) != _WANT_READ:
                    return tls._not_read(got)
                tls._starved = True
            raw = self._fast.recv_nowait()
            if raw is None:
                return None
            size = len(raw)
            if size and _BIO_write(tls._rbio, raw, size) == size:  # ``_feed_bytes``, inline
                tls._starved = False
            else:
                tls._feed_bytes(raw)  # the end, or a failure

    async def recv(self, deadline: float = math.inf, *, wait_first: bool = False) -> bytes:
        """As ``FastSocket.recv``, for plaintext.

        Raises:
            TimedOut, trio.BrokenResourceError, trio.ClosedResourceError: as ``FastSocket``.
        """
        tls = self._tls
        tls._check_usable()
        if not wait_first:
            data = self.recv_nowait()
            if data is not None:
                return data
        while True:
            if tls._outbox or _BIO_mem_data(tls._wbio, _NULL):  # reading made OpenSSL answer
                await tls._flush()
            tls._feed_bytes(await self._fast.recv(deadline, wait_first=True))
            data = self.recv_nowait()
            if data is not None:
                return data

    def write_nowait(self, data: bytes) -> bool:
        """Encrypt ``data`` and write its records now, if the kernel takes them all.

        For a writer that would rather not read the clock or await when the
        kernel has room (``FastSocket.send_nowait`` for TLS): ``data`` is always
        taken; False means some records wait (in the outbox, or behind another
        task's send), and ``send_all(b"", deadline)`` must follow to send them.

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError: as ``FastSocket``.
        """
        tls = self._tls
        if tls._closed or tls._broken:
            tls._check_usable()
        size = len(data)
        if type(data) is bytes and size:  # ``_encrypt``, inline: once per response
            done = _SSL_write(tls._ssl, data, size)
            if done != size:  # more than a record (partial writes), or a failure
                if done <= 0:
                    tls._write_failed(done)
                tls._encrypt_from(data, done)
        else:
            tls._encrypt(data)
        if tls._outbox or tls._in_flight:
            tls._pull()  # in order, behind what waits already
            return False
        # The usual case: nobody else is sending, so the records go out as OpenSSL made
        # them, without the outbox's copies or the lock, if the kernel takes them.
        buf = tls._buf  # ``_records``, inline
        got = _BIO_read(tls._wbio, buf, _SCRATCH)
        if got <= 0:
            return True
        records = _unpack(buf, got)
        try:
            sent = self._fast.send_nowait(records)
        except BaseException:
            tls._broken = True
            raise
        if sent == got and got < _SCRATCH:
            return True
        if sent < got:
            tls._outbox += memoryview(records)[sent:]  # the rest, in order
        tls._pull()
        return not tls._outbox

    async def send_all(self, data: bytes, deadline: float = math.inf) -> None:
        """Encrypt ``data`` and write it; waits only for what the kernel does not take.

        Raises:
            TimedOut, trio.BrokenResourceError, trio.ClosedResourceError: as ``FastSocket``.
        """
        if not self.write_nowait(data):
            await self._tls._flush(deadline)

    async def wait_readable(self, deadline: float = math.inf) -> None:
        """Until plaintext may be there: OpenSSL holds some, or the socket is readable.

        Raises:
            TimedOut, trio.ClosedResourceError: as ``FastSocket``.
        """
        if _SSL_pending(self._tls._ssl):
            return
        await self._fast.wait_readable(deadline)

    def cancel(self) -> None:
        """As ``FastSocket.cancel``."""
        self._fast.cancel()
