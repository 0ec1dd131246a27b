"""Sans-IO protocol code: bytes and events in, bytes and events out; no trio, no sockets.

Where a C compiler was present at build time, mypyc compiled the per-request parsers
(``setup.py``); ``compiled`` runs their sources instead when asked to or when the
extension is stale, and must do so before any of them is imported: hence here.
"""

from pathlib import Path

from edgegw.proto.compiled import use_sources

use_sources(__name__, Path(__file__).parent)
