"""HTTP/2 header lists as text, for tests that drive the ``h2`` library by hand."""

from __future__ import annotations

from collections.abc import Iterable


def text_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The fields of one header block as a ``str`` dict (the last of a repeated name wins).

    ``h2`` hands header fields over as bytes; its ``header_encoding`` option would decode them
    but leave them typed as bytes, so tests decode here instead.
    """
    return {name.decode(): value.decode() for name, value in headers}
