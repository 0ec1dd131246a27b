"""edgegw: a directory of Kubernetes Gateway API YAML becomes a running edge gateway.

Where a C compiler was present at build time, mypyc compiled the per-request sans-IO modules
(``setup.py``); ``proto.compiled`` runs their sources instead when asked to or when an
extension is stale, and must decide before any of them is imported: hence here.
"""

from pathlib import Path

from edgegw.proto.compiled import use_sources

__version__ = "0.1.0"

use_sources(__name__, Path(__file__).parent)
